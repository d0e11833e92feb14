/*
 * cmd/enroll.c: enroll, unenroll, list, status and warm.  The CLI reads the
 * recipe (compose files, optionally at a git tag: blocking is fine here),
 * sends its image list to the daemon's admin API and follows the job; the
 * daemon does the fetching.  A TTY gets a live progress line, anything
 * else plain lines; --json everywhere.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

#define ENROLL_POLL_MS 300

struct enroll_opts {
	const char *server;
	const char *recipes_dir;
	const char *version;
	enum recipe_flags flags;
	int json;
	int wait;
	const char *platforms[8]; /* --platform: added to the daemon's */
	size_t nplatforms;
	const char *docker; /* --docker: dockerd's socket */
};

static const struct option enroll_longopts[] = {
    {"server", required_argument, NULL, 's'},
    {"recipes-dir", required_argument, NULL, 'r'},
    {"version", required_argument, NULL, 'V'},
    {"all-overlays", no_argument, NULL, 'a'},
    {"allow-floating", no_argument, NULL, 'f'},
    {"json", no_argument, NULL, 'j'},
    {"no-wait", no_argument, NULL, 'W'},
    {"platform", required_argument, NULL, 'p'},
    {"docker", optional_argument, NULL, 'D'},
    {NULL, 0, NULL, 0},
};

/* Options shared by every subcommand here; returns optind or -1. */
static int
enroll_getopt(int argc, char **argv, struct enroll_opts *o)
{
	int c;

	memset(o, 0, sizeof *o);
	o->server = client_default_server();
	o->wait = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:r:V:afjWp:D::", enroll_longopts,
		    NULL)) != -1) {
		switch (c) {
		case 's':
			o->server = optarg;
			break;
		case 'r':
			o->recipes_dir = optarg;
			break;
		case 'V':
			o->version = optarg;
			break;
		case 'a':
			o->flags |= RECIPE_ALL_OVERLAYS;
			break;
		case 'f':
			o->flags |= RECIPE_ALLOW_FLOATING;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'W':
			o->wait = 0;
			break;
		case 'p':
			if (o->nplatforms == nitems(o->platforms)) {
				log_error("too many --platform flags");
				return -1;
			}
			o->platforms[o->nplatforms++] = optarg;
			break;
		case 'D':
			o->docker =
			    optarg != NULL ? optarg : "/var/run/docker.sock";
			break;
		default:
			return -1;
		}
	}
	return optind;
}

/* One admin request; the parsed JSON reply, or NULL after a message. */
static json_t *
enroll_call(const struct enroll_opts *o, const char *method, const char *path,
    const char *body)
{
	struct client_reply rep;
	json_t *j = NULL, *errs;
	json_error_t jerr;
	char *url;

	xasprintf(&url, "%s/_ccprewarm/v1/%s", o->server, path);
	if (client_request(method, url, body, &rep) == -1) {
		log_error(
		    "cannot reach '%s': %s (is `ccprewarm serve` running? "
		    "--server URL)",
		    o->server, rep.error);
		goto out;
	}
	j = json_loads(rep.body, 0, &jerr);
	if (rep.status >= 300) {
		errs = json_array_get(json_object_get(j, "errors"), 0);
		log_error("%s %s: %ld %s: %s", method, path, rep.status,
		    json_string_value(json_object_get(errs, "code"))
			? json_string_value(json_object_get(errs, "code"))
			: "",
		    json_string_value(json_object_get(errs, "detail"))
			? json_string_value(json_object_get(errs, "detail"))
			: rep.body);
		json_decref(j);
		j = NULL;
	} else if (j == NULL)
		log_error("%s %s: the reply is not JSON", method, path);
out:
	free(rep.body);
	free(url);
	return j;
}

static int64_t
enroll_int(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *
enroll_str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

static void
enroll_progress(json_t *st, int tty, int64_t t0_ms)
{
	double mib = (double)enroll_int(st, "bytes_fetched") / 1048576.0;
	double total = (double)enroll_int(st, "bytes_total") / 1048576.0;
	double secs = (double)(clock_now_ms() - t0_ms) / 1000.0;
	int64_t done = enroll_int(st, "images_done");
	int64_t all = enroll_int(st, "images_total");
	char bar[21];
	int i, fill;

	if (!tty) {
		printf("%s: %" PRId64 "/%" PRId64 " images, %" PRId64
		       "/%" PRId64 " blobs, %.1f MiB fetched\n",
		    enroll_str(st, "recipe"), done, all,
		    enroll_int(st, "blobs_done"), enroll_int(st, "blobs_total"),
		    mib);
		fflush(stdout);
		return;
	}
	fill = all > 0 ? (int)(20 * done / all) : 0;
	for (i = 0; i < 20; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[20] = '\0';
	printf("\r%s [%s] %" PRId64 "/%" PRId64 " images  %.1f/%.1f MiB  "
	       "%.1f MiB/s   ",
	    enroll_str(st, "recipe"), bar, done, all, mib, total,
	    secs > 0 ? mib / secs : 0.0);
	fflush(stdout);
}

static void
enroll_print_status(json_t *st)
{
	json_t *im;
	size_t i;

	printf("%s%s%s: %s, %" PRId64 "/%" PRId64 " images, %" PRId64
	       " digests, %.1f MiB (%.1f MiB fetched)\n",
	    enroll_str(st, "recipe"), enroll_str(st, "version")[0] ? " " : "",
	    enroll_str(st, "version"), enroll_str(st, "state"),
	    enroll_int(st, "images_done"), enroll_int(st, "images_total"),
	    enroll_int(st, "digests"),
	    (double)enroll_int(st, "bytes_total") / 1048576.0,
	    (double)enroll_int(st, "bytes_fetched") / 1048576.0);
	json_array_foreach(json_object_get(st, "images"), i, im) {
		printf("  %-8s %s%s%s\n", enroll_str(im, "state"),
		    enroll_str(im, "ref"),
		    enroll_str(im, "error")[0] ? ": " : "",
		    enroll_str(im, "error"));
	}
}

/* Follows a recipe's job until it is no longer running; its last status. */
static json_t *
enroll_follow(const struct enroll_opts *o, const char *recipe)
{
	int tty = !o->json && isatty(STDOUT_FILENO);
	int64_t t0 = clock_now_ms(), last_done = -1, last_blobs = -1;
	struct timespec ts = {0, ENROLL_POLL_MS * 1000000L};
	json_t *st;
	char *path;

	xasprintf(&path, "recipes/%s", recipe);
	for (;;) {
		if ((st = enroll_call(o, "GET", path, NULL)) == NULL)
			break;
		if (!o->json &&
		    (tty || enroll_int(st, "images_done") != last_done ||
			enroll_int(st, "blobs_done") / 16 != last_blobs / 16)) {
			enroll_progress(st, tty, t0);
			last_done = enroll_int(st, "images_done");
			last_blobs = enroll_int(st, "blobs_done");
		}
		if (strcmp(enroll_str(st, "state"), "running") != 0 &&
		    strcmp(enroll_str(st, "state"), "queued") != 0)
			break;
		json_decref(st);
		nanosleep(&ts, NULL);
	}
	if (tty)
		printf("\n");
	free(path);
	return st;
}

static int
enroll_finish(const struct enroll_opts *o, json_t *st)
{
	int ok = strcmp(enroll_str(st, "state"), "warm") == 0;
	char *s;

	if (o->json) {
		s = json_dumps(st, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else
		enroll_print_status(st);
	return ok ? 0 : 1;
}

/* --docker: the node's own layer store gets the images too. */
static int
enroll_docker(const struct enroll_opts *o, json_t *st)
{
	json_t *im;
	size_t i;
	int rc = 0;

	json_array_foreach(json_object_get(st, "images"), i, im) {
		if (docker_warm(o->docker, o->server, enroll_str(im, "ref")) ==
		    -1)
			rc = 1;
		else if (!o->json)
			printf("  docker   %s\n", enroll_str(im, "ref"));
	}
	return rc;
}

static const char *
enroll_recipes_dir(const struct enroll_opts *o, char *buf, size_t len)
{
	const char *abra = getenv("ABRA_DIR"), *home = getenv("HOME");

	if (o->recipes_dir != NULL)
		return o->recipes_dir;
	if (abra != NULL)
		snprintf(buf, len, "%s/recipes", abra);
	else
		snprintf(buf, len, "%s/.abra/recipes", home ? home : ".");
	return buf;
}

static int
enroll_one(const struct enroll_opts *o, const char *arg)
{
	char dirbuf[2048], path[4096], err[512], version[160];
	const char *name, *dir, *v;
	struct recipe *rc;
	json_t *body, *images, *st;
	size_t i;
	char *s;
	int ret = 1;

	/* A name in the recipes directory, or a path to a recipe. */
	if (strchr(arg, '/') != NULL) {
		xstrlcpy(path, arg, sizeof path);
		while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
			path[strlen(path) - 1] = '\0';
		name =
		    strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
		dir = path;
	} else {
		name = arg;
		snprintf(path, sizeof path, "%s/%s",
		    enroll_recipes_dir(o, dirbuf, sizeof dirbuf), arg);
		dir = path;
	}
	if ((rc = recipe_load(dir, o->version, o->flags, err, sizeof err)) ==
	    NULL) {
		log_error("%s", err);
		return 1;
	}
	v = o->version != NULL ? o->version : recipe_version(rc);
	xstrlcpy(version, v != NULL ? v : "", sizeof version);
	images = json_array();
	for (i = 0; i < recipe_nimages(rc); i++)
		json_array_append_new(
		    images, json_string(recipe_image(rc, i)->canonical));
	body = json_pack("{s:s,s:s,s:o}", "recipe", name, "version", version,
	    "images", images);
	if (o->nplatforms > 0) {
		json_t *plats = json_array();

		for (i = 0; i < o->nplatforms; i++)
			json_array_append_new(
			    plats, json_string(o->platforms[i]));
		json_object_set_new(body, "platforms", plats);
	}
	s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	recipe_free(rc);
	st = enroll_call(o, "POST", "enroll", s);
	free(s);
	if (st == NULL)
		return 1;
	if (!o->wait) {
		ret = enroll_finish(o, st) == 0 ||
			strcmp(enroll_str(st, "state"), "running") == 0
		    ? 0
		    : 1;
		json_decref(st);
		return ret;
	}
	json_decref(st);
	if ((st = enroll_follow(o, name)) == NULL)
		return 1;
	ret = enroll_finish(o, st);
	if (ret == 0 && o->docker != NULL)
		ret = enroll_docker(o, st);
	json_decref(st);
	return ret;
}

int
enroll_main(int argc, char **argv)
{
	struct enroll_opts o;
	int i, first, rc = 0;

	if ((first = enroll_getopt(argc, argv, &o)) == -1 || first == argc) {
		log_error(
		    "usage: ccprewarm enroll RECIPE... [--version V] "
		    "[--all-overlays] [--allow-floating] [--recipes-dir DIR]");
		return 2;
	}
	for (i = first; i < argc; i++)
		rc |= enroll_one(&o, argv[i]);
	return rc;
}

int
unenroll_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *r;
	char *path;
	int i, first, rc = 0;

	if ((first = enroll_getopt(argc, argv, &o)) == -1 || first == argc) {
		log_error("usage: ccprewarm unenroll RECIPE...");
		return 2;
	}
	for (i = first; i < argc; i++) {
		xasprintf(&path, "recipes/%s", argv[i]);
		if ((r = enroll_call(&o, "DELETE", path, NULL)) == NULL)
			rc = 1;
		else if (!o.json)
			printf("%s: unenrolled; its images are no longer "
			       "pinned\n",
			    argv[i]);
		json_decref(r);
		free(path);
	}
	return rc;
}

int
list_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *a, *st;
	size_t i;
	char *s;

	if (enroll_getopt(argc, argv, &o) != argc)
		return 2;
	if ((a = enroll_call(&o, "GET", "recipes", NULL)) == NULL)
		return 1;
	if (o.json) {
		s = json_dumps(a, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else {
		printf("%-24s %-20s %7s %10s  %s\n", "RECIPE", "VERSION",
		    "IMAGES", "MIB", "STATE");
		json_array_foreach(a, i, st)
			printf("%-24s %-20s %3" PRId64 "/%-3" PRId64
			       " %10.1f  %s\n",
			    enroll_str(st, "recipe"), enroll_str(st, "version"),
			    enroll_int(st, "images_done"),
			    enroll_int(st, "images_total"),
			    (double)enroll_int(st, "bytes_total") / 1048576.0,
			    enroll_str(st, "state"));
	}
	json_decref(a);
	return 0;
}

int
status_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *st;
	char *path;
	int first, rc;

	if ((first = enroll_getopt(argc, argv, &o)) == -1 ||
	    first != argc - 1) {
		log_error("usage: ccprewarm status RECIPE [--json]");
		return 2;
	}
	xasprintf(&path, "recipes/%s", argv[first]);
	st = enroll_call(&o, "GET", path, NULL);
	free(path);
	if (st == NULL)
		return 1;
	rc = enroll_finish(&o, st);
	if (!o.json && json_is_true(json_object_get(st, "pins_over_budget")))
		printf("warning: pinned content alone exceeds the store's "
		       "budget; every pin is kept (raise max_bytes)\n");
	json_decref(st);
	return rc;
}

int
warm_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *a, *st, *last;
	size_t i;
	int rc = 0;

	if (enroll_getopt(argc, argv, &o) != argc)
		return 2;
	if ((a = enroll_call(&o, "POST", "warm", "{}")) == NULL)
		return 1;
	json_array_foreach(a, i, st) {
		if (!o.wait) {
			rc |= enroll_finish(&o, st) &&
			    strcmp(enroll_str(st, "state"), "running") != 0;
			continue;
		}
		if ((last = enroll_follow(&o, enroll_str(st, "recipe"))) ==
		    NULL) {
			rc = 1;
			continue;
		}
		rc |= enroll_finish(&o, last);
		json_decref(last);
	}
	json_decref(a);
	return rc;
}
