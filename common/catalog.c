/*  catalog: see catalog.h. A service's package name is its bus name. */
#include "catalog.h"
#include "audit.pb-c.h"
#include "bus.pb-c.h"
#include "chat.pb-c.h"
#include "identity.pb-c.h"
#include "invite.pb-c.h"
#include "meet.pb-c.h"
#include "org.pb-c.h"

#include <string.h>

const ProtobufCServiceDescriptor *const catalog_services[] = {
    &identity__identity__descriptor,
    &org__org_service__descriptor,
    &invite__invite__descriptor,
    &chat__chat_service__descriptor,
    &meet__meet__descriptor,
    &audit__audit__descriptor,
    &bus__sys__descriptor,
    NULL,
};

const ProtobufCMethodDescriptor *
catalog_method (const char *bus_method)
{
    const char *dot = strchr (bus_method, '.');
    if (!dot)
        return NULL;
    size_t prefix = (size_t) (dot - bus_method);
    for (int i = 0; catalog_services[i]; i++) {
        const ProtobufCServiceDescriptor *svc = catalog_services[i];
        /*  svc->name is "identity.Identity": the package comes first. */
        if (strncmp (svc->name, bus_method, prefix) == 0 && svc->name[prefix] == '.')
            return protobuf_c_service_descriptor_get_method_by_name (svc, dot + 1);
    }
    return NULL;
}
