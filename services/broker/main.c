/*  parta-broker: reads configuration and runs the broker actor until
    SIGINT or SIGTERM. `--keygen DIR` creates the CURVE keys directory
    (curve.h) and exits. */
#include "broker.h"
#include "config.h"
#include "curve.h"
#include "log.h"

static const config_opt_t s_options[] = {
    {"keygen", NULL, "create CURVE keys in this directory (if missing) and exit"},
    {NULL, NULL, NULL},
};

int
main (int argc, char **argv)
{
    config_t *cfg = config_load_or_exit ("broker", s_options, argc, argv);
    const char *keygen = config_str (cfg, "keygen");
    if (keygen) {
        int rc = curve_keygen (keygen);
        if (rc == 0)
            log_info (NULL, "CURVE keys ready dir=%s", keygen);
        config_destroy (&cfg);
        return rc ? 1 : 0;
    }
    zactor_t *broker = broker_start (cfg);
    if (!broker) {
        config_destroy (&cfg);
        return 1;
    }
    while (!zsys_interrupted)
        zclock_sleep (100);
    zactor_destroy (&broker);
    config_destroy (&cfg);
    return 0;
}
