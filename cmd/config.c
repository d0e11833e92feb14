/*
 * cmd/config.c: the JSON configuration file and the flags that override it.
 * Every problem is reported with its key path before start-up fails, so an
 * operator fixes them in one go.  json_t stays in this file.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

static void config_problem(struct config *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
config_problem(struct config *cfg, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log_error("config: %s", line);
	cfg->errors++;
}

/* One event loop per online CPU, at most 8 (README "loops"). */
static int64_t
config_default_loops(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 8 ? 8 : (int64_t)n;
}

void
config_init(struct config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->opts.tag_freshness_s = 300;
	cfg->recipe_versions = 2;
	cfg->opts.connect_timeout_ms = 5000;
	cfg->opts.response_timeout_ms = 10000;
	cfg->opts.idle_timeout_s = 120;
	cfg->opts.drain_timeout_s = 10;
	cfg->opts.max_requests = 4096;
	cfg->opts.header_timeout_s = 20;
	cfg->opts.stall_s = 20;
	cfg->opts.stall_total_s = 60;
	cfg->opts.access_log = "-";
	cfg->opts.access_log_buffer_bytes = 64 * 1024;
	cfg->opts.access_log_flush_ms = 1000;
	cfg->opts.manifest_cache_bytes = 4 << 20;
	cfg->opts.runs_keep = 50;
	cfg->opts.shared_pins_s = 60;
	cfg->opts.loops = config_default_loops();
}

void
config_release(struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nstrings; i++)
		free(cfg->strings[i]);
	free(cfg->listen);
	free(cfg->log_level);
	memset(cfg, 0, sizeof *cfg);
}

const char *
config_str(struct config *cfg, const char *s)
{
	if (cfg->nstrings == nitems(cfg->strings))
		fatal("config: too many strings");
	return cfg->strings[cfg->nstrings++] = xstrdup(s);
}

int
config_set_listen(struct config *cfg, const char *s)
{
	const char *colon = strrchr(s, ':');
	char host[256];
	unsigned long port;
	size_t hlen;
	char *ep;

	if (colon == NULL) {
		config_problem(cfg, "listen: '%s' is not HOST:PORT", s);
		return -1;
	}
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		s++;
		hlen -= 2;
	}
	errno = 0;
	port = strtoul(colon + 1, &ep, 10);
	if (errno != 0 || *ep != '\0' || ep == colon + 1 || port > 65535 ||
	    hlen >= sizeof host) {
		config_problem(cfg, "listen: '%s' is not HOST:PORT", s);
		return -1;
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	cfg->opts.listen_host = config_str(cfg, hlen == 0 ? "0.0.0.0" : host);
	cfg->opts.listen_port = (unsigned short)port;
	return 0;
}

static int
config_url_ok(const char *url)
{
	return strncmp(url, "https://", 8) == 0 ||
	    strncmp(url, "http://", 7) == 0;
}

static struct server_upstream_conf *
config_upstream_slot(struct config *cfg, const char *name)
{
	struct server_opts *o = &cfg->opts;
	size_t i;

	for (i = 0; i < o->nupstreams; i++)
		if (strcmp(o->upstreams[i].name, name) == 0)
			return &o->upstreams[i];
	if (o->nupstreams == SERVER_MAX_UPSTREAMS) {
		config_problem(
		    cfg, "upstreams: more than %d", SERVER_MAX_UPSTREAMS);
		return NULL;
	}
	o->upstreams[o->nupstreams].name = config_str(cfg, name);
	return &o->upstreams[o->nupstreams++];
}

int
config_add_upstream(struct config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct server_upstream_conf *u;
	char name[256];
	const char *url = arg;

	strcpy(name, "docker.io");
	if (eq != NULL) {
		if ((size_t)(eq - arg) >= sizeof name || eq == arg) {
			config_problem(
			    cfg, "upstream: '%s' is not HOST=URL", arg);
			return -1;
		}
		memcpy(name, arg, (size_t)(eq - arg));
		name[eq - arg] = '\0';
		url = eq + 1;
		if (!route_is_host(name, strlen(name))) {
			config_problem(cfg,
			    "upstream: '%s' is not a registry host name (it needs a '.' or ':')",
			    name);
			return -1;
		}
	}
	if (!config_url_ok(url)) {
		config_problem(
		    cfg, "upstream: '%s' is not an http(s) URL", url);
		return -1;
	}
	if ((u = config_upstream_slot(cfg, name)) == NULL)
		return -1;
	u->url = config_str(cfg, url);
	return 0;
}

static void
config_int(struct config *cfg, json_t *root, const char *key, int64_t min,
    int64_t max, int64_t *out)
{
	json_t *v = json_object_get(root, key);

	if (v == NULL)
		return;
	if (!json_is_integer(v) || json_integer_value(v) < min ||
	    json_integer_value(v) > max) {
		config_problem(cfg, "%s: must be an integer from %lld to %lld",
		    key, (long long)min, (long long)max);
		return;
	}
	*out = json_integer_value(v);
}

static const char *
config_string(
    struct config *cfg, json_t *obj, const char *path, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL)
		return NULL;
	if (!json_is_string(v)) {
		config_problem(cfg, "%s%s: must be a string", path, key);
		return NULL;
	}
	return json_string_value(v);
}

/*
 * A credentials file: {"username": "...", "password": "..."}, readable by
 * its owner only.  Its contents are never logged.
 */
static void
config_credentials(struct config *cfg, struct server_upstream_conf *u,
    const char *keypath, const char *file)
{
	json_error_t jerr;
	struct stat st;
	json_t *root;
	const char *user, *pass;

	if (stat(file, &st) == -1) {
		config_problem(cfg, "%s: cannot read '%s': %s", keypath, file,
		    strerror(errno));
		return;
	}
	if ((st.st_mode & 077) != 0) {
		config_problem(cfg,
		    "%s: '%s' is readable by others (mode %03o); chmod 600 it",
		    keypath, file, (unsigned)(st.st_mode & 0777));
		return;
	}
	if ((root = json_load_file(file, 0, &jerr)) == NULL) {
		config_problem(cfg, "%s: '%s' line %d: %s", keypath, file,
		    jerr.line, jerr.text);
		return;
	}
	user = json_string_value(json_object_get(root, "username"));
	pass = json_string_value(json_object_get(root, "password"));
	if (user == NULL || pass == NULL)
		config_problem(cfg,
		    "%s: '%s' needs string keys \"username\" and \"password\"",
		    keypath, file);
	else {
		u->username = config_str(cfg, user);
		u->password = config_str(cfg, pass);
	}
	json_decref(root);
}

static void
config_upstreams(struct config *cfg, json_t *ups)
{
	struct server_upstream_conf *u;
	const char *name, *url, *key, *s;
	char path[300];
	json_t *v, *field;

	if (!json_is_object(ups)) {
		config_problem(cfg,
		    "upstreams: must be an object of \"host\": {\"url\": ...}");
		return;
	}
	json_object_foreach(ups, name, v) {
		snprintf(path, sizeof path, "upstreams.%s.", name);
		if (json_is_string(v))
			url = json_string_value(v);
		else if (json_is_object(v))
			url = config_string(cfg, v, path, "url");
		else {
			config_problem(cfg,
			    "upstreams.%s: must be a URL or an object", name);
			continue;
		}
		if (strcmp(name, "docker.io") != 0 &&
		    !route_is_host(name, strlen(name))) {
			config_problem(cfg,
			    "upstreams.%s: not a registry host name (it needs a '.' or ':')",
			    name);
			continue;
		}
		if (url == NULL || !config_url_ok(url)) {
			config_problem(
			    cfg, "%surl: must be an http(s) URL", path);
			continue;
		}
		if ((u = config_upstream_slot(cfg, name)) == NULL)
			continue;
		u->url = config_str(cfg, url);
		if (!json_is_object(v))
			continue;
		json_object_foreach(v, key, field) {
			if (strcmp(key, "url") != 0 &&
			    strcmp(key, "credentials_file") != 0 &&
			    strcmp(key, "ca_file") != 0)
				config_problem(
				    cfg, "%s%s: unknown key", path, key);
		}
		if ((s = config_string(cfg, v, path, "credentials_file")) !=
		    NULL) {
			char kp[320];

			snprintf(kp, sizeof kp, "%scredentials_file", path);
			config_credentials(cfg, u, kp, s);
		}
		if ((s = config_string(cfg, v, path, "ca_file")) != NULL)
			u->ca_file = config_str(cfg, s);
	}
}

/*
 * shared_store: {url, bucket, region, credentials_file, prefix,
 * multipart_min_bytes, part_size_bytes}.  The credentials file is JSON,
 * {"access_key_id": ..., "secret_access_key": ...}, mode 600.
 */
static void
config_shared_store(struct config *cfg, json_t *v)
{
	static const char *const keys[] = {"url", "bucket", "region",
	    "credentials_file", "prefix", "multipart_min_bytes",
	    "part_size_bytes", "node", "pins_publish_seconds",
	    "connect_timeout_ms", "response_timeout_ms"};
	struct s3_conf *c = &cfg->opts.shared_store;
	const char *url, *key, *s, *ak, *sk;
	int64_t n;
	json_error_t jerr;
	json_t *field, *root;
	struct stat st;
	size_t i;
	int known;

	if (!json_is_object(v)) {
		config_problem(cfg,
		    "shared_store: must be an object with "
		    "\"url\" and \"bucket\"");
		return;
	}
	json_object_foreach(v, key, field) {
		known = 0;
		for (i = 0; i < nitems(keys); i++)
			known |= strcmp(key, keys[i]) == 0;
		if (!known)
			config_problem(
			    cfg, "shared_store.%s: unknown key", key);
	}
	url = config_string(cfg, v, "shared_store.", "url");
	if (url == NULL || !config_url_ok(url))
		config_problem(cfg, "shared_store.url: must be an http(s) URL");
	else
		c->url = config_str(cfg, url);
	if ((s = config_string(cfg, v, "shared_store.", "bucket")) == NULL ||
	    s[0] == '\0' || strchr(s, '/') != NULL)
		config_problem(
		    cfg, "shared_store.bucket: must be a bucket name");
	else
		c->bucket = config_str(cfg, s);
	if ((s = config_string(cfg, v, "shared_store.", "region")) != NULL)
		c->region = config_str(cfg, s);
	if ((s = config_string(cfg, v, "shared_store.", "prefix")) != NULL)
		c->prefix = config_str(cfg, s);
	if ((s = config_string(cfg, v, "shared_store.", "node")) != NULL) {
		if (!shared_node_valid(s))
			config_problem(cfg,
			    "shared_store.node: '%s' must be letters, digits, "
			    "'.', '_' or '-'",
			    s);
		else
			cfg->opts.shared_node = config_str(cfg, s);
	}
	config_int(
	    cfg, v, "pins_publish_seconds", 0, 86400, &cfg->opts.shared_pins_s);
	n = 0;
	config_int(cfg, v, "connect_timeout_ms", 0, 600000, &n);
	c->connect_timeout_ms = (long)n;
	n = 0;
	config_int(cfg, v, "response_timeout_ms", 0, 600000, &n);
	c->response_timeout_ms = (long)n;
	n = 0;
	config_int(cfg, v, "multipart_min_bytes", 5 << 20, INT64_MAX / 2, &n);
	c->multipart_min = (uint64_t)n;
	n = 0;
	config_int(cfg, v, "part_size_bytes", 5 << 20, 5LL << 30, &n);
	c->part_size = (uint64_t)n;
	s = config_string(cfg, v, "shared_store.", "credentials_file");
	if (s == NULL) {
		config_problem(cfg, "shared_store.credentials_file: required");
		return;
	}
	if (stat(s, &st) == -1) {
		config_problem(cfg,
		    "shared_store.credentials_file: cannot read "
		    "'%s': %s",
		    s, strerror(errno));
		return;
	}
	if ((st.st_mode & 077) != 0) {
		config_problem(cfg,
		    "shared_store.credentials_file: '%s' is readable by others "
		    "(mode %03o); chmod 600 it",
		    s, (unsigned)(st.st_mode & 0777));
		return;
	}
	if ((root = json_load_file(s, 0, &jerr)) == NULL) {
		config_problem(cfg,
		    "shared_store.credentials_file: '%s' line %d: %s", s,
		    jerr.line, jerr.text);
		return;
	}
	ak = json_string_value(json_object_get(root, "access_key_id"));
	sk = json_string_value(json_object_get(root, "secret_access_key"));
	if (ak == NULL || sk == NULL)
		config_problem(cfg,
		    "shared_store.credentials_file: '%s' needs string keys "
		    "\"access_key_id\" and \"secret_access_key\"",
		    s);
	else {
		c->access_key = config_str(cfg, ak);
		c->secret_key = config_str(cfg, sk);
	}
	json_decref(root);
}

static const char *const config_keys[] = {"listen", "data", "upstream",
    "upstreams", "tag_freshness_seconds", "connect_timeout_ms",
    "response_timeout_ms", "idle_timeout_seconds", "drain_timeout_seconds",
    "max_requests", "platforms", "log_level", "access_log", "max_bytes",
    "min_free_bytes", "min_free_percent", "low_water_percent", "runs_keep",
    "header_timeout_seconds", "index_map_bytes", "upstream_stall_seconds",
    "upstream_stall_total_seconds", "recipe_versions", "shared_store",
    "access_log_buffer_bytes", "access_log_flush_ms", "manifest_cache_bytes",
    "loops"};

/* The store's budget (storage/lru.c): bytes and percentages, 0 is off. */
static void
config_budget(struct config *cfg, json_t *root)
{
	struct server_opts *o = &cfg->opts;
	int64_t v;

	v = (int64_t)o->max_bytes;
	config_int(cfg, root, "max_bytes", 0, INT64_MAX, &v);
	o->max_bytes = (uint64_t)v;
	v = (int64_t)o->min_free_bytes;
	config_int(cfg, root, "min_free_bytes", 0, INT64_MAX, &v);
	o->min_free_bytes = (uint64_t)v;
	config_int(cfg, root, "min_free_percent", 0, 99, &o->min_free_percent);
	config_int(
	    cfg, root, "low_water_percent", 0, 100, &o->low_water_percent);
}

int
config_set_bytes(
    struct config *cfg, const char *flag, const char *s, uint64_t *out)
{
	unsigned long long v;
	char *ep;

	errno = 0;
	v = strtoull(s, &ep, 10);
	if (errno != 0 || ep == s || s[0] == '-') {
		config_problem(
		    cfg, "%s: '%s' is not a number of bytes", flag, s);
		return -1;
	}
	/* K, M, G, T suffixes: powers of 1024 */
	switch (*ep) {
	case 'T':
		v <<= 10;
		/* FALLTHROUGH */
	case 'G':
		v <<= 10;
		/* FALLTHROUGH */
	case 'M':
		v <<= 10;
		/* FALLTHROUGH */
	case 'K':
		v <<= 10;
		ep++;
		break;
	default:
		break;
	}
	if (*ep != '\0') {
		config_problem(
		    cfg, "%s: '%s' is not a number of bytes", flag, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int config_load_root(struct config *, json_t *, const char *);

int
config_load_file(struct config *cfg, const char *path)
{
	json_error_t jerr;
	json_t *root;

	if ((root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		config_problem(cfg, "cannot read '%s': line %d: %s", path,
		    jerr.line, jerr.text);
		return -1;
	}
	return config_load_root(cfg, root, path);
}

int
config_load_string(struct config *cfg, const char *buf, size_t len)
{
	json_error_t jerr;
	json_t *root;

	if ((root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL) {
		config_problem(cfg,
		    "cannot parse the configuration: line %d: %s", jerr.line,
		    jerr.text);
		return -1;
	}
	return config_load_root(cfg, root, "(string)");
}

/* Takes root (a new reference); path names it in messages. */
static int
config_load_root(struct config *cfg, json_t *root, const char *path)
{
	struct server_opts *o = &cfg->opts;
	const char *key, *s;
	json_t *v;
	size_t i;
	int known;

	if (!json_is_object(root)) {
		config_problem(
		    cfg, "'%s': the top level must be an object", path);
		json_decref(root);
		return -1;
	}
	json_object_foreach(root, key, v) {
		known = 0;
		for (i = 0; i < nitems(config_keys); i++)
			known |= strcmp(key, config_keys[i]) == 0;
		if (!known)
			config_problem(cfg, "%s: unknown key", key);
	}
	if ((s = config_string(cfg, root, "", "listen")) != NULL)
		config_set_listen(cfg, s);
	if ((s = config_string(cfg, root, "", "data")) != NULL)
		o->data_dir = config_str(cfg, s);
	if ((s = config_string(cfg, root, "", "upstream")) != NULL)
		config_add_upstream(cfg, s);
	if ((v = json_object_get(root, "upstreams")) != NULL)
		config_upstreams(cfg, v);
	if ((v = json_object_get(root, "shared_store")) != NULL)
		config_shared_store(cfg, v);
	config_int(cfg, root, "tag_freshness_seconds", 0, 86400 * 365,
	    &o->tag_freshness_s);
	config_int(cfg, root, "connect_timeout_ms", 100, 600000,
	    &o->connect_timeout_ms);
	config_int(
	    cfg, root, "idle_timeout_seconds", 1, 86400, &o->idle_timeout_s);
	config_int(cfg, root, "response_timeout_ms", 0, 600000,
	    &o->response_timeout_ms);
	config_int(
	    cfg, root, "drain_timeout_seconds", 0, 3600, &o->drain_timeout_s);
	config_int(cfg, root, "max_requests", 1, 1000000, &o->max_requests);
	config_int(cfg, root, "loops", 1, 16, &o->loops);
	config_int(cfg, root, "recipe_versions", 1, 32, &cfg->recipe_versions);
	config_budget(cfg, root);
	config_int(cfg, root, "runs_keep", 1, 100000, &o->runs_keep);
	config_int(
	    cfg, root, "header_timeout_seconds", 0, 3600, &o->header_timeout_s);
	/* LMDB grows the file up to this; a few KiB per blob and tag */
	config_int(cfg, root, "index_map_bytes", (int64_t)1 << 16,
	    (int64_t)1 << 40, &o->index_map_bytes);
	config_int(cfg, root, "upstream_stall_seconds", 1, 3600, &o->stall_s);
	config_int(cfg, root, "upstream_stall_total_seconds", 1, 86400,
	    &o->stall_total_s);
	if ((v = json_object_get(root, "platforms")) != NULL) {
		if (!json_is_array(v) ||
		    json_array_size(v) > nitems(cfg->platforms))
			config_problem(cfg,
			    "platforms: must be an array of up to %zu strings like \"linux/amd64\"",
			    nitems(cfg->platforms));
		else {
			json_t *p;

			json_array_foreach(v, i, p) {
				if (!json_is_string(p) ||
				    strncmp(json_string_value(p), "linux/",
					6) != 0) {
					config_problem(cfg,
					    "platforms[%zu]: not a platform like \"linux/amd64\"",
					    i);
					continue;
				}
				cfg->platforms[cfg->nplatforms++] =
				    config_str(cfg, json_string_value(p));
			}
		}
	}
	if ((s = config_string(cfg, root, "", "log_level")) != NULL) {
		free(cfg->log_level);
		cfg->log_level = xstrdup(s);
	}
	if ((s = config_string(cfg, root, "", "access_log")) != NULL)
		o->access_log = config_str(cfg, s);
	/* 0: a write per line, as before buffering */
	config_int(cfg, root, "access_log_buffer_bytes", 0, 16 << 20,
	    &o->access_log_buffer_bytes);
	config_int(cfg, root, "access_log_flush_ms", 1, 60000,
	    &o->access_log_flush_ms);
	config_int(cfg, root, "manifest_cache_bytes", 0, (int64_t)1 << 34,
	    &o->manifest_cache_bytes);
	json_decref(root);
	return cfg->errors ? -1 : 0;
}

int
config_finish(struct config *cfg)
{
	struct server_opts *o = &cfg->opts;
	enum log_level lvl;

	if (o->listen_host == NULL)
		config_set_listen(cfg, CONFIG_DEFAULT_LISTEN);
	if (o->data_dir == NULL)
		o->data_dir = CONFIG_DEFAULT_DATA;
	if (o->nupstreams == 0) {
		/* The registries Co-op Cloud recipes pull from. */
		config_add_upstream(cfg, CONFIG_DOCKER_HUB_URL);
		config_add_upstream(cfg, "ghcr.io=https://ghcr.io");
		config_add_upstream(cfg, "quay.io=https://quay.io");
	}
	if (cfg->log_level != NULL &&
	    log_level_parse(cfg->log_level, &lvl) == -1)
		config_problem(cfg,
		    "log_level: '%s' is not one of debug, info, warn, error",
		    cfg->log_level);
	return cfg->errors ? -1 : 0;
}
