/*  catalog: every service's protobuf method descriptors, so code that
    speaks to several services (the gateway's route table, its JSON codec)
    finds a bus method's request and reply types by name
    ("identity.login" -> the identity service's rpc login). */
#ifndef PARTA_CATALOG_H
#define PARTA_CATALOG_H

#include <protobuf-c/protobuf-c.h>

/*  NULL when no service declares the method. "sys.*" methods are found too. */
const ProtobufCMethodDescriptor *catalog_method (const char *bus_method);

/*  The service descriptors, NULL-terminated. */
extern const ProtobufCServiceDescriptor *const catalog_services[];

#endif
