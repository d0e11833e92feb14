/*
 * cmd/catalogue.c: abra's recipe catalogue ($ABRA_DIR/catalogue/
 * recipes.json): recipe -> versions -> services' image, tag and digest.
 * Read by `enroll --catalogue` (no recipe checkout needed) and shown by
 * `ccprewarm catalogue list`.  The CLI reads it; the daemon never does.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

static void
catalogue_free_version(struct catalogue_version *v)
{
	size_t i;

	for (i = 0; i < v->nimages; i++) {
		free(v->images[i].service);
		free(v->images[i].ref);
		free(v->images[i].digest);
	}
	free(v->images);
	free(v->version);
}

void
catalogue_free(struct catalogue *c)
{
	size_t i, k;

	if (c == NULL)
		return;
	for (i = 0; i < c->nrecipes; i++) {
		for (k = 0; k < c->recipes[i].nversions; k++)
			catalogue_free_version(&c->recipes[i].versions[k]);
		free(c->recipes[i].versions);
		free(c->recipes[i].name);
	}
	free(c->recipes);
	free(c);
}

const char *
catalogue_default_path(char *buf, size_t len)
{
	const char *abra = getenv("ABRA_DIR"), *home = getenv("HOME");

	if (abra != NULL)
		snprintf(buf, len, "%s/catalogue/recipes.json", abra);
	else
		snprintf(buf, len, "%s/.abra/catalogue/recipes.json",
		    home ? home : ".");
	return buf;
}

/* One service of one version: {"image", "tag", "digest"}. */
static int
catalogue_image(struct catalogue_image *im, const char *recipe,
    const char *version, const char *service, json_t *o, char *err,
    size_t errlen)
{
	const char *image = json_string_value(json_object_get(o, "image"));
	const char *tag = json_string_value(json_object_get(o, "tag"));
	const char *digest = json_string_value(json_object_get(o, "digest"));
	const char *why, *hex;
	char *raw = NULL, canon[REF_STRLEN];
	struct ref ref;
	size_t n;

	if (image == NULL || image[0] == '\0') {
		snprintf(err, errlen,
		    "recipe '%s' version '%s' service '%s' has no image",
		    recipe, version, service);
		return -1;
	}
	if (tag != NULL && tag[0] != '\0')
		xasprintf(&raw, "%s:%s", image, tag);
	else
		raw = xstrdup(image);
	if (ref_parse(&ref, raw, &why) == -1) {
		snprintf(err, errlen,
		    "recipe '%s' version '%s' service '%s': invalid image '%.200s': %s",
		    recipe, version, service, raw, why);
		free(raw);
		return -1;
	}
	free(raw);
	ref_format(&ref, canon, sizeof canon);
	im->service = xstrdup(service);
	im->ref = xstrdup(canon);
	if (digest == NULL || digest[0] == '\0' ||
	    strcmp(digest, "unknown") == 0)
		return 0;
	hex = strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest;
	n = strlen(hex);
	if (n < 8 || n > 64 || strspn(hex, "0123456789abcdef") != n) {
		snprintf(err, errlen,
		    "recipe '%s' version '%s' service '%s': invalid digest '%.80s' (want sha256:<hex>, a hex prefix or unknown)",
		    recipe, version, service, digest);
		return -1;
	}
	im->digest = xstrdup(digest);
	return 0;
}

static int
catalogue_recipe(struct catalogue_recipe *r, const char *name, json_t *o,
    char *err, size_t errlen)
{
	json_t *versions = json_object_get(o, "versions"), *e, *svcs, *svc;
	const char *version, *service;
	struct catalogue_version *v;
	size_t i;

	r->name = xstrdup(name);
	if (versions == NULL)
		return 0;
	if (!json_is_array(versions)) {
		snprintf(
		    err, errlen, "recipe '%s': versions is not a list", name);
		return -1;
	}
	/* [ {"<version>": {"<service>": {...}, ...}}, ... ] */
	json_array_foreach(versions, i, e) {
		json_object_foreach(e, version, svcs) {
			r->versions = xreallocarray(
			    r->versions, r->nversions + 1, sizeof *r->versions);
			v = &r->versions[r->nversions++];
			memset(v, 0, sizeof *v);
			v->version = xstrdup(version);
			if (!json_is_object(svcs)) {
				snprintf(err, errlen,
				    "recipe '%s' version '%s': services are not an object",
				    name, version);
				return -1;
			}
			json_object_foreach(svcs, service, svc) {
				v->images = xreallocarray(v->images,
				    v->nimages + 1, sizeof *v->images);
				memset(&v->images[v->nimages], 0,
				    sizeof *v->images);
				if (catalogue_image(&v->images[v->nimages++],
					name, version, service, svc, err,
					errlen) == -1)
					return -1;
			}
		}
	}
	return 0;
}

struct catalogue *
catalogue_load(const char *path, char *err, size_t errlen)
{
	struct catalogue *c = xcalloc(1, sizeof *c);
	json_error_t jerr;
	const char *name;
	json_t *root, *o;
	char why[400];

	if ((root = json_load_file(path, 0, &jerr)) == NULL) {
		snprintf(err, errlen, "cannot read catalogue '%s': line %d: %s",
		    path, jerr.line, jerr.text);
		free(c);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen,
		    "catalogue '%s': the top level must be an object", path);
		goto fail;
	}
	json_object_foreach(root, name, o) {
		c->recipes = xreallocarray(
		    c->recipes, c->nrecipes + 1, sizeof *c->recipes);
		memset(&c->recipes[c->nrecipes], 0, sizeof *c->recipes);
		if (catalogue_recipe(&c->recipes[c->nrecipes++], name, o, why,
			sizeof why) == -1) {
			snprintf(err, errlen, "catalogue '%s': %s", path, why);
			goto fail;
		}
	}
	json_decref(root);
	return c;
fail:
	json_decref(root);
	catalogue_free(c);
	return NULL;
}

const struct catalogue_recipe *
catalogue_find(const struct catalogue *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nrecipes; i++)
		if (strcmp(c->recipes[i].name, name) == 0)
			return &c->recipes[i];
	return NULL;
}

const struct catalogue_version *
catalogue_version_find(const struct catalogue_recipe *r, const char *version)
{
	size_t i;

	for (i = 0; i < r->nversions; i++)
		if (strcmp(r->versions[i].version, version) == 0)
			return &r->versions[i];
	return NULL;
}

size_t
catalogue_window(const struct catalogue_recipe *r, size_t n,
    const struct catalogue_version **out)
{
	char **tags = xcalloc(r->nversions + 1, sizeof *tags);
	char **win = xcalloc(n + 1, sizeof *win);
	size_t i, k;

	for (i = 0; i < r->nversions; i++)
		tags[i] = r->versions[i].version;
	k = version_window(tags, r->nversions, n, win);
	for (i = 0; i < k; i++)
		out[i] = catalogue_version_find(r, win[i]);
	free(win);
	free(tags);
	return k;
}

/* `ccprewarm catalogue list [RECIPE...] [--catalogue FILE] [--versions N]
 * [--json]`: the versions and images enroll --catalogue would pin. */
static const struct option catalogue_longopts[] = {
    {"catalogue", required_argument, NULL, 'C'},
    {"versions", required_argument, NULL, 'N'},
    {"json", no_argument, NULL, 'j'},
    {NULL, 0, NULL, 0},
};

int
catalogue_main(int argc, char **argv)
{
	const struct catalogue_version *win[32];
	const struct catalogue_recipe *r;
	const char *file = NULL;
	char buf[2048], err[600], *s;
	struct catalogue *c;
	json_t *out, *vers, *imgs;
	long n = 2;
	int ch, json = 0, first, i;
	size_t k, m, nw;

	optind = 1;
	while ((ch = getopt_long(
		    argc, argv, "C:N:j", catalogue_longopts, NULL)) != -1) {
		switch (ch) {
		case 'C':
			file = optarg;
			break;
		case 'N':
			n = strtol(optarg, &s, 10);
			if (*s != '\0' || n < 1 || n > 32) {
				log_error("--versions: want 1 to 32, not '%s'",
				    optarg);
				return 2;
			}
			break;
		case 'j':
			json = 1;
			break;
		default:
			return 2;
		}
	}
	first = optind;
	if (first >= argc || strcmp(argv[first], "list") != 0) {
		log_error("usage: ccprewarm catalogue list [RECIPE...] "
			  "[--catalogue FILE] [--versions N] [--json]");
		return 2;
	}
	first++;
	if (file == NULL)
		file = catalogue_default_path(buf, sizeof buf);
	if ((c = catalogue_load(file, err, sizeof err)) == NULL) {
		log_error("%s", err);
		return 1;
	}
	out = json_array();
	for (k = 0; k < c->nrecipes; k++) {
		r = &c->recipes[k];
		if (first < argc) {
			for (i = first; i < argc; i++)
				if (strcmp(argv[i], r->name) == 0)
					break;
			if (i == argc)
				continue;
		}
		nw = catalogue_window(r, (size_t)n, win);
		vers = json_array();
		for (m = 0; m < nw; m++) {
			size_t x;

			imgs = json_array();
			for (x = 0; x < win[m]->nimages; x++)
				json_array_append_new(imgs,
				    json_pack("{s:s,s:s,s:s*}", "service",
					win[m]->images[x].service, "ref",
					win[m]->images[x].ref, "digest",
					win[m]->images[x].digest));
			json_array_append_new(vers,
			    json_pack("{s:s,s:o}", "version", win[m]->version,
				"images", imgs));
			if (!json)
				for (x = 0; x < win[m]->nimages; x++)
					printf("%-20s %-20s %-12s %s%s%s\n",
					    r->name, win[m]->version,
					    win[m]->images[x].service,
					    win[m]->images[x].ref,
					    win[m]->images[x].digest ? " " : "",
					    win[m]->images[x].digest
						? win[m]->images[x].digest
						: "");
		}
		json_array_append_new(out,
		    json_pack("{s:s,s:I,s:o}", "recipe", r->name, "window",
			(json_int_t)n, "versions", vers));
	}
	if (json) {
		s = json_dumps(out, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	}
	json_decref(out);
	catalogue_free(c);
	return 0;
}
