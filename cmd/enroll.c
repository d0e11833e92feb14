/*
 * cmd/enroll.c: enroll, unenroll, list, status and warm.  The CLI reads the
 * recipe (its release tags, the compose files at each tag, or abra's
 * catalogue: blocking is fine here), chooses the versions (the window of
 * the newest releases, or one --version), sends each version's images to
 * the daemon's admin API and follows the jobs; the daemon does the
 * fetching and pinning.  A TTY gets a live progress line, anything
 * else plain lines; --json everywhere.
 */
#include <sys/stat.h>

#include <getopt.h>
#include <limits.h>
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
#define ENROLL_MAX_VERSIONS 32

struct enroll_opts {
	const char *server;
	const char *recipes_dir;
	const char *version;
	enum recipe_flags flags;
	int json;
	int wait;
	const char *platforms[8]; /* --platform: added to the daemon's */
	size_t nplatforms;
	const char *docker;	    /* --docker: dockerd's socket */
	long versions;		    /* --versions N; 0: the daemon's default */
	int catalogue;		    /* --catalogue */
	const char *catalogue_file; /* its FILE; NULL: abra's */
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
    {"versions", required_argument, NULL, 'N'},
    {"catalogue", optional_argument, NULL, 'C'},
    {NULL, 0, NULL, 0},
};

/* Options shared by every subcommand here; returns optind or -1. */
static int
enroll_getopt(int argc, char **argv, struct enroll_opts *o)
{
	char *end;
	int c;

	memset(o, 0, sizeof *o);
	o->server = client_default_server();
	o->wait = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv,
		    "s:r:V:afjWp:D::N:C::", enroll_longopts, NULL)) != -1) {
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
		case 'N':
			o->versions = strtol(optarg, &end, 10);
			if (*end != '\0' || o->versions < 1 ||
			    o->versions > ENROLL_MAX_VERSIONS) {
				log_error("--versions: want 1 to %d, not '%s'",
				    ENROLL_MAX_VERSIONS, optarg);
				return -1;
			}
			break;
		case 'C':
			o->catalogue = 1;
			o->catalogue_file = optarg;
			break;
		default:
			return -1;
		}
	}
	return optind;
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

/* "window,explicit" or "-" */
static void
enroll_reasons(json_t *v, char *buf, size_t len)
{
	json_t *r;
	size_t i;

	buf[0] = '\0';
	json_array_foreach(json_object_get(v, "reasons"), i, r) {
		if (buf[0] != '\0')
			strncat(buf, ",", len - strlen(buf) - 1);
		strncat(buf, json_string_value(r) ? json_string_value(r) : "",
		    len - strlen(buf) - 1);
	}
	if (buf[0] == '\0')
		xstrlcpy(buf, "-", len);
}

static void
enroll_print_status(json_t *st)
{
	json_t *im, *v;
	char why[64];
	size_t i;

	printf("%s%s%s: %s, %" PRId64 "/%" PRId64 " images, %" PRId64
	       " digests, %.1f MiB (%.1f MiB fetched)\n",
	    enroll_str(st, "recipe"), enroll_str(st, "version")[0] ? " " : "",
	    enroll_str(st, "version"), enroll_str(st, "state"),
	    enroll_int(st, "images_done"), enroll_int(st, "images_total"),
	    enroll_int(st, "digests"),
	    (double)enroll_int(st, "bytes_total") / 1048576.0,
	    (double)enroll_int(st, "bytes_fetched") / 1048576.0);
	json_array_foreach(json_object_get(st, "versions"), i, v) {
		enroll_reasons(v, why, sizeof why);
		printf("  version %-20s %-8s %s, %" PRId64 "/%" PRId64
		       " images, %.1f MiB\n",
		    enroll_str(v, "version")[0] ? enroll_str(v, "version")
						: "(none)",
		    enroll_str(v, "state"),
		    json_is_true(json_object_get(v, "pinned")) ? "pinned"
							       : "not pinned",
		    enroll_int(v, "images_done"), enroll_int(v, "images_total"),
		    (double)enroll_int(v, "bytes_total") / 1048576.0);
		printf("          why: %s\n", why);
	}
	json_array_foreach(json_object_get(st, "images"), i, im) {
		printf("  %-8s %s%s%s\n", enroll_str(im, "state"),
		    enroll_str(im, "ref"),
		    enroll_str(im, "error")[0] ? ": " : "",
		    enroll_str(im, "error"));
	}
}

/* Follows a recipe's jobs until none is running; its last status. */
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
		if ((st = client_admin(o->server, "GET", path, NULL)) == NULL)
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

/* Every failed image of every version: one line each, naming both. */
static void
enroll_report_failures(json_t *st)
{
	json_t *v, *im;
	size_t i, k;

	json_array_foreach(json_object_get(st, "versions"), i, v)
		json_array_foreach(json_object_get(v, "images"), k, im)
			if (strcmp(enroll_str(im, "state"), "failed") == 0)
				log_error("recipe '%s' version '%s': %s: %s",
				    enroll_str(st, "recipe"),
				    enroll_str(v, "version"),
				    enroll_str(im, "ref"),
				    enroll_str(im, "error"));
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

/* --versions, else the daemon's recipe_versions, else 2. */
static long
enroll_window(const struct enroll_opts *o)
{
	struct client_reply rep;
	json_t *j;
	char *url;
	long n = 2;

	if (o->versions > 0)
		return o->versions;
	/* quietly: an unreachable server is reported once, by the enroll */
	xasprintf(&url, "%s/_ccprewarm/v1/settings", o->server);
	if (client_request("GET", url, NULL, &rep) == 0 && rep.status == 200 &&
	    (j = json_loads(rep.body, 0, NULL)) != NULL) {
		if (enroll_int(j, "recipe_versions") > 0)
			n = (long)enroll_int(j, "recipe_versions");
		json_decref(j);
	}
	free(rep.body);
	free(url);
	return n;
}

static json_t *
enroll_recipe_images(const struct recipe *rc)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < recipe_nimages(rc); i++)
		json_array_append_new(
		    a, json_string(recipe_image(rc, i)->canonical));
	return a;
}

/* One version of a recipe checkout, read at its tag. */
static json_t *
enroll_git_version(const struct enroll_opts *o, const char *name,
    const char *dir, const char *version, const char *reason)
{
	struct recipe *rc;
	char err[512];
	json_t *v;

	if ((rc = recipe_load(dir, version, o->flags, err, sizeof err)) ==
	    NULL) {
		log_error("recipe '%s' version '%s': %s", name, version, err);
		return NULL;
	}
	v = json_pack("{s:s,s:s,s:o}", "version", version, "reason", reason,
	    "images", enroll_recipe_images(rc));
	recipe_free(rc);
	return v;
}

/*
 * The window of a recipe checkout into body: its n newest release tags,
 * each read with git show (never a fetch).  0, 1 if the checkout has no
 * release tag (or is no git checkout), -1 after a message.
 */
static int
enroll_git_window(const struct enroll_opts *o, const char *name,
    const char *dir, long n, json_t *body)
{
	char **tags = NULL, *win[ENROLL_MAX_VERSIONS], err[512];
	size_t ntags = 0, nwin = 0, i;
	json_t *versions, *v;
	int rc = -1, res;

	if ((res = recipe_tags(dir, &tags, &ntags, err, sizeof err)) == -1) {
		log_error("recipe '%s': %s", name, err);
		return -1;
	}
	if (res == 0)
		nwin = version_window(tags, ntags, (size_t)n, win);
	if (nwin == 0) {
		rc = 1;
		goto out;
	}
	versions = json_array();
	for (i = 0; i < nwin; i++) {
		if ((v = enroll_git_version(o, name, dir, win[i], "window")) ==
		    NULL) {
			json_decref(versions);
			goto out;
		}
		json_array_append_new(versions, v);
	}
	json_object_set_new(body, "versions", versions);
	json_object_set_new(body, "replace", json_string("window"));
	json_object_set_new(body, "window", json_integer(n));
	json_object_set_new(body, "source", json_string("git"));
	rc = 0;
out:
	for (i = 0; i < ntags; i++)
		free(tags[i]);
	free(tags);
	return rc;
}

/* The working tree of a recipe with no release tags, as one version. */
static int
enroll_checkout(const struct enroll_opts *o, const char *name, const char *dir,
    json_t *body)
{
	struct recipe *rc;
	char err[512];
	const char *v;

	if ((rc = recipe_load(dir, NULL, o->flags, err, sizeof err)) == NULL) {
		log_error("%s", err);
		return -1;
	}
	(void)name;
	v = recipe_version(rc);
	json_object_set_new(body, "versions",
	    json_pack("[{s:s,s:s,s:o}]", "version", v != NULL ? v : "",
		"reason", "checkout", "images", enroll_recipe_images(rc)));
	json_object_set_new(body, "replace", json_string("checkout"));
	json_object_set_new(body, "source", json_string("dir"));
	recipe_free(rc);
	return 0;
}

/* A catalogue version's images: one entry per distinct reference, with
 * the digest the catalogue gives and the services using it. */
static json_t *
enroll_catalogue_version(const struct catalogue_version *cv, const char *reason)
{
	json_t *imgs = json_array(), *e;
	char svc[64];
	size_t i, k;

	for (i = 0; i < cv->nimages; i++) {
		for (k = 0; k < i; k++)
			if (strcmp(cv->images[k].ref, cv->images[i].ref) == 0)
				break;
		if (k < i)
			continue; /* listed with the first service */
		xstrlcpy(svc, cv->images[i].service, sizeof svc);
		for (k = i + 1; k < cv->nimages; k++)
			if (strcmp(cv->images[k].ref, cv->images[i].ref) == 0 &&
			    strlen(svc) + strlen(cv->images[k].service) + 2 <
				sizeof svc) {
				strcat(svc, ",");
				strcat(svc, cv->images[k].service);
			}
		e = json_pack(
		    "{s:s,s:s}", "ref", cv->images[i].ref, "service", svc);
		if (cv->images[i].digest != NULL)
			json_object_set_new(
			    e, "digest", json_string(cv->images[i].digest));
		json_array_append_new(imgs, e);
	}
	return json_pack("{s:s,s:s,s:o}", "version", cv->version, "reason",
	    reason, "images", imgs);
}

/* Versions and images from abra's catalogue into body.  0 or -1. */
static int
enroll_catalogue(const char *name, const char *file, const char *version,
    long n, json_t *body)
{
	const struct catalogue_version *win[ENROLL_MAX_VERSIONS], *cv;
	const struct catalogue_recipe *r;
	struct catalogue *c;
	json_t *versions;
	char err[600];
	size_t nwin, i;
	int rc = -1;

	if ((c = catalogue_load(file, err, sizeof err)) == NULL) {
		log_error("%s", err);
		return -1;
	}
	if ((r = catalogue_find(c, name)) == NULL) {
		log_error("recipe '%s' is not in catalogue '%s'", name, file);
		goto out;
	}
	versions = json_array();
	if (version != NULL) {
		if ((cv = catalogue_version_find(r, version)) == NULL) {
			log_error(
			    "recipe '%s' has no version '%s' in catalogue '%s'",
			    name, version, file);
			json_decref(versions);
			goto out;
		}
		json_array_append_new(
		    versions, enroll_catalogue_version(cv, "explicit"));
	} else {
		nwin = catalogue_window(r, (size_t)n, win);
		if (nwin == 0) {
			log_error(
			    "recipe '%s' has no released version in catalogue '%s'",
			    name, file);
			json_decref(versions);
			goto out;
		}
		for (i = 0; i < nwin; i++)
			json_array_append_new(versions,
			    enroll_catalogue_version(win[i], "window"));
		json_object_set_new(body, "replace", json_string("window"));
		json_object_set_new(body, "window", json_integer(n));
	}
	json_object_set_new(body, "versions", versions);
	json_object_set_new(body, "source", json_string("catalogue"));
	rc = 0;
out:
	catalogue_free(c);
	return rc;
}

/* Posts an enrolment and follows it; the exit status. */
static int
enroll_post(const struct enroll_opts *o, const char *name, json_t *body)
{
	json_t *st;
	size_t i;
	char *s;
	int ret;

	if (o->nplatforms > 0) {
		json_t *plats = json_array();

		for (i = 0; i < o->nplatforms; i++)
			json_array_append_new(
			    plats, json_string(o->platforms[i]));
		json_object_set_new(body, "platforms", plats);
	}
	json_object_set_new(body, "flags", json_integer(o->flags));
	s = json_dumps(body, JSON_COMPACT);
	st = client_admin(o->server, "POST", "enroll", s);
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
	if (ret != 0)
		enroll_report_failures(st);
	if (ret == 0 && o->docker != NULL)
		ret = enroll_docker(o, st);
	json_decref(st);
	return ret;
}

static int
enroll_one(const struct enroll_opts *o, const char *arg)
{
	char dirbuf[2048], path[4096], abs[PATH_MAX], cbuf[2048];
	const char *name, *dir, *file;
	json_t *body, *v;
	int ret = 1, res;

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
	body = json_pack("{s:s}", "recipe", name);
	if (o->catalogue) {
		file = o->catalogue_file != NULL
		    ? o->catalogue_file
		    : catalogue_default_path(cbuf, sizeof cbuf);
		if (enroll_catalogue(name, file, o->version,
			o->version ? 0 : enroll_window(o), body) == -1)
			goto out;
		dir = file;
	} else if (o->version != NULL) {
		if ((v = enroll_git_version(
			 o, name, dir, o->version, "explicit")) == NULL)
			goto out;
		json_object_set_new(body, "versions", json_pack("[o]", v));
		json_object_set_new(body, "source", json_string("git"));
	} else if ((res = enroll_git_window(
			o, name, dir, enroll_window(o), body)) == -1) {
		goto out;
	} else if (res == 1 && o->versions > 0) {
		log_error(
		    "recipe '%s' has no release tags in '%s' (tags like 1.2.0+3.4.5); leave out --versions to enroll the checkout as it is",
		    name, dir);
		goto out;
	} else if (res == 1 && enroll_checkout(o, name, dir, body) == -1)
		goto out;
	if (realpath(dir, abs) != NULL)
		dir = abs;
	json_object_set_new(body, "path", json_string(dir));
	ret = enroll_post(o, name, body);
out:
	json_decref(body);
	return ret;
}

int
enroll_main(int argc, char **argv)
{
	struct enroll_opts o;
	struct stat st;
	int i, first, rc = 0;

	if ((first = enroll_getopt(argc, argv, &o)) == -1 || first == argc) {
		log_error("usage: ccprewarm enroll RECIPE... [--versions N | "
			  "--version V] [--catalogue[=FILE]] [--all-overlays] "
			  "[--allow-floating] [--recipes-dir DIR]");
		return 2;
	}
	/* "--catalogue FILE": getopt leaves FILE among the recipes */
	if (o.catalogue && o.catalogue_file == NULL)
		for (i = first; i < argc; i++)
			if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode)) {
				o.catalogue_file = argv[i];
				argv[i] = NULL;
			}
	for (i = first; i < argc; i++)
		if (argv[i] != NULL)
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
		log_error("usage: ccprewarm unenroll RECIPE... [--version V]");
		return 2;
	}
	for (i = first; i < argc; i++) {
		if (o.version != NULL)
			xasprintf(&path, "recipes/%s@%s", argv[i], o.version);
		else
			xasprintf(&path, "recipes/%s", argv[i]);
		if ((r = client_admin(o.server, "DELETE", path, NULL)) == NULL)
			rc = 1;
		else if (o.json && o.version != NULL) {
			char *s = json_dumps(r, JSON_COMPACT);

			printf("%s\n", s);
			free(s);
		} else if (o.version != NULL &&
		    json_array_size(json_object_get(r, "unpinned")) > 0)
			printf("%s: version %s unenrolled and unpinned (its "
			       "blobs stay until evicted)\n",
			    argv[i], o.version);
		else if (o.version != NULL)
			printf("%s: version %s is no longer pinned explicitly; "
			       "the window still pins it\n",
			    argv[i], o.version);
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
	st = client_admin(o.server, "GET", path, NULL);
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
list_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *a, *st, *v;
	char why[64];
	size_t i, k;
	char *s;

	if (enroll_getopt(argc, argv, &o) != argc)
		return 2;
	if ((a = client_admin(o.server, "GET", "recipes", NULL)) == NULL)
		return 1;
	if (o.json) {
		s = json_dumps(a, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
		json_decref(a);
		return 0;
	}
	printf("%-24s %-20s %7s %10s  %-16s %s\n", "RECIPE", "VERSION",
	    "IMAGES", "MIB", "PINNED", "STATE");
	json_array_foreach(a, i, st) {
		if (json_array_size(json_object_get(st, "versions")) == 0)
			printf("%-24s %-20s %7s %10s  %-16s %s\n",
			    enroll_str(st, "recipe"), "-", "-", "-", "-",
			    enroll_str(st, "state"));
		json_array_foreach(json_object_get(st, "versions"), k, v) {
			enroll_reasons(v, why, sizeof why);
			if (!json_is_true(json_object_get(v, "pinned")))
				xstrlcpy(why, "no", sizeof why);
			printf("%-24s %-20s %3" PRId64 "/%-3" PRId64
			       " %10.1f  %-16s %s\n",
			    enroll_str(st, "recipe"),
			    enroll_str(v, "version")[0]
				? enroll_str(v, "version")
				: "-",
			    enroll_int(v, "images_done"),
			    enroll_int(v, "images_total"),
			    (double)enroll_int(v, "bytes_total") / 1048576.0,
			    why, enroll_str(v, "state"));
		}
	}
	json_decref(a);
	return 0;
}

/*
 * warm: every enrolled recipe is read again where it came from (the
 * checkout's tags, abra's catalogue, the working tree; never a network
 * fetch of its own), its window is sent, and the daemon fetches and pins
 * new versions, unpins those that fell out, and re-resolves the rest.
 */
static int
warm_one(const struct enroll_opts *o, json_t *rec, json_t **reply)
{
	struct enroll_opts ro = *o;
	const char *name = enroll_str(rec, "recipe");
	const char *source = enroll_str(rec, "source");
	const char *path = enroll_str(rec, "path");
	long window = (long)enroll_int(rec, "window");
	json_t *body;
	char *s;
	int rc = 0, res;

	ro.flags = (enum recipe_flags)enroll_int(rec, "flags");
	body = json_pack(
	    "{s:s,s:b,s:[]}", "recipe", name, "rewarm", 1, "versions");
	if (strcmp(source, "git") == 0 && window > 0) {
		if ((res = enroll_git_window(&ro, name, path, window, body)) ==
		    -1)
			rc = 1;
		else if (res == 1) {
			log_error(
			    "recipe '%s': no release tags left in '%s'; keeping its versions",
			    name, path);
			rc = 1;
		}
	} else if (strcmp(source, "catalogue") == 0 && window > 0) {
		if (enroll_catalogue(name, path, NULL, window, body) == -1)
			rc = 1;
	} else if (strcmp(source, "dir") == 0 && path[0] != '\0') {
		if (enroll_checkout(&ro, name, path, body) == -1)
			rc = 1;
	}
	if (json_object_get(body, "source") != NULL)
		json_object_set_new(body, "path", json_string(path));
	s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if ((*reply = client_admin(o->server, "POST", "enroll", s)) == NULL)
		rc = 1;
	free(s);
	return rc;
}

int
warm_main(int argc, char **argv)
{
	struct enroll_opts o;
	json_t *a, *rec, *last, **replies;
	json_t *v;
	size_t i, k, n;
	char *s;
	int rc = 0;

	if (enroll_getopt(argc, argv, &o) != argc)
		return 2;
	if ((a = client_admin(o.server, "GET", "recipes", NULL)) == NULL)
		return 1;
	n = json_array_size(a);
	replies = xcalloc(n + 1, sizeof *replies);
	json_array_foreach(a, i, rec) {
		rc |= warm_one(&o, rec, &replies[i]);
		if (replies[i] == NULL || o.json)
			continue;
		json_array_foreach(json_object_get(replies[i], "added"), k, v)
			printf("%s: new version %s: fetching and pinning\n",
			    enroll_str(rec, "recipe"), json_string_value(v));
		json_array_foreach(
		    json_object_get(replies[i], "unpinned"), k, v)
			printf("%s: version %s left the window: unpinned (its "
			       "blobs stay until evicted)\n",
			    enroll_str(rec, "recipe"), json_string_value(v));
		if (json_array_size(json_object_get(replies[i], "added")) +
			json_array_size(
			    json_object_get(replies[i], "unpinned")) ==
		    0)
			printf("%s: no version changes\n",
			    enroll_str(rec, "recipe"));
	}
	fflush(stdout);
	for (i = 0; i < n; i++) {
		if (replies[i] == NULL)
			continue;
		last = NULL;
		if (o.wait &&
		    (last = enroll_follow(
			 &o, enroll_str(replies[i], "recipe"))) == NULL) {
			rc = 1;
			continue;
		}
		if (last == NULL)
			last = json_incref(replies[i]);
		json_object_set(
		    last, "added", json_object_get(replies[i], "added"));
		json_object_set(
		    last, "unpinned", json_object_get(replies[i], "unpinned"));
		if (o.json) {
			s = json_dumps(last, JSON_COMPACT);
			printf("%s\n", s);
			free(s);
			if (strcmp(enroll_str(last, "state"), "warm") != 0 &&
			    o.wait)
				rc = 1;
		} else if (enroll_finish(&o, last) != 0 && o.wait)
			rc = 1;
		if (o.wait && strcmp(enroll_str(last, "state"), "warm") != 0)
			enroll_report_failures(last);
		json_decref(last);
	}
	for (i = 0; i < n; i++)
		json_decref(replies[i]);
	free(replies);
	json_decref(a);
	return rc;
}
