/*  curve: see curve.h. */
#include "curve.h"
#include "log.h"

#include <sys/stat.h>

static int
s_exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

static int
s_pair (const char *dir, const char *name, const char *comment)
{
    char pub[1024], sec[1024];
    snprintf (pub, sizeof pub, "%s/%s.cert", dir, name);
    snprintf (sec, sizeof sec, "%s/%s.cert_secret", dir, name);
    if (s_exists (pub) && s_exists (sec))
        return 0;
    if (s_exists (pub) || s_exists (sec)) {
        /*  Half a pair: on a host that holds only the broker's public key,
            making a new pair would lock it out. Leave it to the operator. */
        log_error (NULL, "CURVE key pair is incomplete, not replacing it public=%s secret=%s", pub,
                   sec);
        return -1;
    }
    zcert_t *cert = zcert_new ();
    if (!cert)
        return -1;
    zcert_set_meta (cert, "name", "%s", comment);
    int rc = zcert_save (cert, pub);
    zcert_destroy (&cert);
    if (rc) {
        log_error (NULL, "cannot save key path=%s", pub);
        return -1;
    }
    chmod (sec, 0600);
    return 0;
}

int
curve_keygen (const char *dir)
{
    char allowed[1024], src[1024], dst[1024];
    snprintf (allowed, sizeof allowed, "%s/allowed", dir);
    if (zsys_dir_create ("%s", allowed)) {
        log_error (NULL, "cannot create keys directory path=%s", allowed);
        return -1;
    }
    if (s_pair (dir, "broker", "parta broker") || s_pair (dir, "client", "parta processes"))
        return -1;
    snprintf (src, sizeof src, "%s/client.cert", dir);
    snprintf (dst, sizeof dst, "%s/client.cert", allowed);
    if (!s_exists (dst)) {
        zcert_t *cert = zcert_load (src);
        if (!cert || zcert_save_public (cert, dst)) {
            zcert_destroy (&cert);
            log_error (NULL, "cannot allow client key path=%s", dst);
            return -1;
        }
        zcert_destroy (&cert);
    }
    return 0;
}

/*  zcert_load falls back to the public file when the secret one is
    missing, leaving an all-zero secret key: refuse that. */
static int
s_zero_secret (zcert_t *cert)
{
    const byte *key = zcert_secret_key (cert);
    for (int i = 0; i < 32; i++)
        if (key[i])
            return 0;
    return 1;
}

int
curve_client_setup (zsock_t *sock, const char *dir, const char *cert_path)
{
    char path[1024], broker[1024];
    if (cert_path) {
        /*  zcert_load wants the public file's name; accept either. */
        snprintf (path, sizeof path, "%s", cert_path);
        size_t n = strlen (path);
        if (n > 7 && strcmp (path + n - 7, "_secret") == 0)
            path[n - 7] = 0;
    }
    else
        snprintf (path, sizeof path, "%s/client.cert", dir);
    snprintf (broker, sizeof broker, "%s/broker.cert", dir);
    zcert_t *mine = zcert_load (path);
    zcert_t *server = zcert_load (broker);
    if (!mine || !server || s_zero_secret (mine)) {
        log_error (NULL, "cannot load CURVE keys (a secret certificate and the broker's public one)"
                         " client=%s broker=%s", path, broker);
        zcert_destroy (&mine);
        zcert_destroy (&server);
        return -1;
    }
    zcert_apply (mine, sock);
    zsock_set_curve_serverkey (sock, zcert_public_txt (server));
    zcert_destroy (&mine);
    zcert_destroy (&server);
    return 0;
}

int
curve_server_setup (zsock_t *sock, const char *dir)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/broker.cert", dir);
    zcert_t *cert = zcert_load (path);
    if (!cert || s_zero_secret (cert)) {
        log_error (NULL, "cannot load the broker's CURVE key pair path=%s", path);
        zcert_destroy (&cert);
        return -1;
    }
    zcert_apply (cert, sock);
    zsock_set_curve_server (sock, 1);
    zsock_set_zap_domain (sock, "parta");
    zcert_destroy (&cert);
    return 0;
}

zactor_t *
curve_auth_start (const char *dir)
{
    char allowed[1024];
    snprintf (allowed, sizeof allowed, "%s/allowed", dir);
    zdir_t *listing = zdir_new (allowed, NULL);
    int n = listing ? zdir_count (listing) : 0;
    zdir_destroy (&listing);
    if (n == 0) {
        log_error (NULL, "no allowed CURVE keys: nobody could connect path=%s", allowed);
        return NULL;
    }
    zactor_t *auth = zactor_new (zauth, NULL);
    if (!auth)
        return NULL;
    zstr_sendx (auth, "CURVE", allowed, NULL);
    zsock_wait (auth);
    return auth;
}
