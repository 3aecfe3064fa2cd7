/* master_metaclean.c: deletes expired clients' metadata records on a thread
 * of its own (master_metaclean.h). */
#include "master_metaclean.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <stdio.h>

#include "base_log.h"
#include "mooncake/meta.h"
#include "net_tls.h"

#define TAG "master"
#define QUEUE_MAX 4096

struct mc_master_metaclean {
    mc_meta_t *meta;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    char (*q)[MC_NAME_MAX]; /* ring of segment names */
    size_t head, n;
};

static void *clean_main(void *arg)
{
    mc_master_metaclean_t *mc = arg;
    pthread_mutex_lock(&mc->mu);
    for (;;) {
        while (!mc->n && !mc->stop)
            pthread_cond_wait(&mc->cv, &mc->mu);
        if (!mc->n) break;
        char name[MC_NAME_MAX];
        memcpy(name, mc->q[mc->head], sizeof name);
        mc->head = (mc->head + 1) % QUEUE_MAX;
        mc->n--;
        pthread_mutex_unlock(&mc->mu);
        int rc = mc_meta_del_segment(mc->meta, name);
        if (rc == 0)
            MC_LOGI(TAG, "metadata records of expired segment '%s' deleted", name);
        else
            MC_LOGW(TAG, "cannot delete the metadata records of expired segment '%s': %s", name,
                    strerror(-rc));
        pthread_mutex_lock(&mc->mu);
    }
    pthread_mutex_unlock(&mc->mu);
    return NULL;
}

int mc_master_metaclean_start(const char *conn, mc_master_metaclean_t **out)
{
    *out = NULL;
    mc_master_metaclean_t *mc = calloc(1, sizeof *mc);
    if (!mc) return -ENOMEM;
    mc->q = calloc(QUEUE_MAX, sizeof *mc->q);
    int rc = mc->q ? mc_meta_open(conn, &mc->meta) : -ENOMEM;
    if (rc) {
        free(mc->q);
        free(mc);
        return rc;
    }
    pthread_mutex_init(&mc->mu, NULL);
    pthread_cond_init(&mc->cv, NULL);
    if (pthread_create(&mc->thr, NULL, clean_main, mc) != 0) {
        mc_meta_close(mc->meta);
        pthread_cond_destroy(&mc->cv);
        pthread_mutex_destroy(&mc->mu);
        free(mc->q);
        free(mc);
        return -EAGAIN;
    }
    *out = mc;
    return 0;
}

void mc_master_metaclean_push(void *arg, const mc_segment_t *seg)
{
    mc_master_metaclean_t *mc = arg;
    const char *name = seg->te_endpoint[0] ? seg->te_endpoint : seg->name;
    pthread_mutex_lock(&mc->mu);
    if (mc->n == QUEUE_MAX) {
        pthread_mutex_unlock(&mc->mu);
        MC_LOGW(TAG, "metadata cleanup queue full (%d): records of '%s' left in place", QUEUE_MAX,
                name);
        return;
    }
    size_t t = (mc->head + mc->n++) % QUEUE_MAX;
    strncpy(mc->q[t], name, MC_NAME_MAX - 1);
    mc->q[t][MC_NAME_MAX - 1] = '\0';
    pthread_cond_signal(&mc->cv);
    pthread_mutex_unlock(&mc->mu);
}

void mc_master_metaclean_stop(mc_master_metaclean_t *mc)
{
    if (!mc) return;
    pthread_mutex_lock(&mc->mu);
    mc->stop = 1;
    pthread_cond_signal(&mc->cv);
    pthread_mutex_unlock(&mc->mu);
    pthread_join(mc->thr, NULL);
    mc_meta_close(mc->meta);
    pthread_cond_destroy(&mc->cv);
    pthread_mutex_destroy(&mc->mu);
    free(mc->q);
    free(mc);
}

int mc_master_metaclean_conn(char *buf, size_t len, int embedded_port)
{
    const char *env = getenv("MOONCAKE_TE_META_DATA_SERVER");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return 0;
    }
    const char *path = getenv("MOONCAKE_CONFIG_PATH");
    if (path && *path) {
        json_error_t err;
        json_t *j = json_load_file(path, 0, &err);
        const char *v = j ? json_string_value(json_object_get(j, "metadata_server")) : NULL;
        if (v && *v) snprintf(buf, len, "%s", v);
        json_decref(j);
        if (v && *v) return 0;
    }
    if (embedded_port > 0) {
        snprintf(buf, len, "%s://127.0.0.1:%d/metadata", mc_tls_files() ? "https" : "http",
                 embedded_port);
        return 0;
    }
    return -ENOENT;
}
