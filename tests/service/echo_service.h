/*  echo_service: a small service for bus tests and benchmarks: echo (read),
    count (an idempotent write) and emit (writes events). */
#ifndef PARTA_ECHO_SERVICE_H
#define PARTA_ECHO_SERVICE_H

#include "bus_worker.h"
#include "echo.pb-c.h"

extern bus_service_t echo_service;

#endif
