/*
 * cmd/cmd.h: the command line: configuration loading (config.c) and the
 * subcommands (ccprewarm.c).
 */
#ifndef CMD_H
#define CMD_H

#include "../prewarm/prewarm.h"

#define CONFIG_DEFAULT_LISTEN "127.0.0.1:5000"
#define CONFIG_DEFAULT_DATA "/var/lib/ccprewarm"
#define CONFIG_DOCKER_HUB_URL "https://registry-1.docker.io"
#define CONFIG_DEFAULT_SERVER "http://127.0.0.1:5000"

/* Everything serve needs; owns the strings server_opts points at. */
struct config {
	struct server_opts opts;
	char *strings[4 * SERVER_MAX_UPSTREAMS + 16];
	size_t nstrings;
	char *listen;
	char *log_level;
	const char *platforms[8]; /* pre-warm; none: this machine's */
	size_t nplatforms;
	int64_t recipe_versions; /* enroll's default --versions */
	int errors; /* problems found so far (each already printed) */
};

void config_init(struct config *);
void config_release(struct config *);
/* Reads a JSON config file into cfg (later command-line flags override). */
int config_load_file(struct config *, const char *path);
/* The same from len bytes of JSON in memory (the fuzzer's entry point). */
int config_load_string(struct config *, const char *buf, size_t len);
/* --listen HOST:PORT */
int config_set_listen(struct config *, const char *);
/* --upstream URL (the default registry, docker.io) or HOST=URL */
int config_add_upstream(struct config *, const char *);
/* --max-bytes and friends: a number with an optional K, M, G, T suffix. */
int config_set_bytes(
    struct config *, const char *flag, const char *s, uint64_t *out);
/* Fills defaults and checks the whole; 0, or -1 after printing each error. */
int config_finish(struct config *);
/* Keeps a copy of s alive as long as cfg. */
const char *config_str(struct config *, const char *s);

/* client.c: one blocking admin-API request (CLI only) */
struct client_reply {
	long status;
	char *body;	 /* owned; NUL-terminated */
	char error[256]; /* when the request could not be made */
};
/* --server's default: $CCPREWARM_SERVER, else CONFIG_DEFAULT_SERVER. */
const char *client_default_server(void);
int client_request(const char *method, const char *url, const char *body,
    struct client_reply *);
/* One admin-API call: the JSON reply (a json_t, caller decrefs), or NULL
 * after a one-line message naming the server or the error the reply gave. */
struct json_t *client_admin(
    const char *server, const char *method, const char *path, const char *body);
/* The same over a unix socket (dockerd's Engine API). */
int client_request_unix(const char *sock, const char *method, const char *url,
    const char *body, struct client_reply *);

/* human.c: n bytes as "512 B", "1.5 MiB", ...: buf, len bytes. */
const char *human_bytes(uint64_t n, char *buf, size_t len);

/* docker.c: --docker: pull an image into dockerd through the mirror. */
int docker_warm(const char *sock, const char *server, const char *ref);

/* catalogue.c: abra's recipes.json (CLI only) */
struct catalogue_image {
	char *service;
	char *ref;    /* canonical "host/repo:tag" */
	char *digest; /* NULL when the catalogue says "unknown" */
};
struct catalogue_version {
	char *version;
	struct catalogue_image *images;
	size_t nimages;
};
struct catalogue_recipe {
	char *name;
	struct catalogue_version *versions; /* in catalogue order */
	size_t nversions;
};
struct catalogue {
	struct catalogue_recipe *recipes;
	size_t nrecipes;
};
/* $ABRA_DIR/catalogue/recipes.json, else ~/.abra/catalogue/recipes.json */
const char *catalogue_default_path(char *buf, size_t len);
/* A new catalogue, or NULL with one line in err. */
struct catalogue *catalogue_load(const char *path, char *err, size_t errlen);
void catalogue_free(struct catalogue *); /* NULL-safe */
const struct catalogue_recipe *catalogue_find(
    const struct catalogue *, const char *name);
const struct catalogue_version *catalogue_version_find(
    const struct catalogue_recipe *, const char *version);
/* The n newest released versions into out (borrowed); how many. */
size_t catalogue_window(const struct catalogue_recipe *, size_t n,
    const struct catalogue_version **out);
int catalogue_main(int, char **);
/* gc.c, verify.c, pins.c: the store's lifecycle */
int gc_main(int, char **);
int verify_main(int, char **);
int pins_main(int, char **);

/* stats.c */
int stats_main(int, char **);

/* sharedgc.c: shared-gc */
int sharedgc_main(int, char **);

/* enroll.c: enroll, unenroll, list, status, warm */
int enroll_main(int, char **);
int unenroll_main(int, char **);
int list_main(int, char **);
int status_main(int, char **);
int warm_main(int, char **);

/* runs.c: run begin/end, runs [show|compare|baseline] */
int run_main(int, char **);
int runs_main(int, char **);

#endif
