/*
 * tests/unit/test_recipe.c: prewarm/recipe.c.  Every fixture recipe under
 * tests/data/recipes is loaded with its default COMPOSE_FILE set and with
 * all overlays and checked against expected-images.json; the broken
 * recipes under tests/data/recipes-bad must fail with the exact line.  Run
 * from the repository root, or point CCPREWARM_TESTDATA at tests/data.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../../common/common.h"
#include "../../prewarm/prewarm.h"
#include "unit.h"

static const char *
test_recipe_datadir(void)
{
	const char *d = getenv("CCPREWARM_TESTDATA");

	return d != NULL ? d : "tests/data";
}

static struct recipe *
test_recipe_load(const char *sub, const char *version, enum recipe_flags flags,
    char *err, size_t errlen)
{
	char dir[1024];

	snprintf(dir, sizeof(dir), "%s/%s", test_recipe_datadir(), sub);
	return recipe_load(dir, version, flags, err, errlen);
}

static json_t *
test_recipe_expected(void)
{
	char path[1024];
	json_error_t jerr;
	json_t *j;

	snprintf(path, sizeof(path), "%s/recipes/expected-images.json",
	    test_recipe_datadir());
	if ((j = json_load_file(path, 0, &jerr)) == NULL)
		fprintf(stderr, "%s:%d: %s\n", path, jerr.line, jerr.text);
	return j;
}

/* 1 if the recipe's canonical images are exactly want (a sorted array). */
static int
test_recipe_same_images(
    const char *what, const struct recipe *r, const json_t *want)
{
	size_t i;

	if (!json_is_array(want) || json_array_size(want) != recipe_nimages(r))
		goto differ;
	for (i = 0; i < recipe_nimages(r); i++)
		if (strcmp(recipe_image(r, i)->canonical,
			json_string_value(json_array_get(want, i))) != 0)
			goto differ;
	return 1;
differ:
	fprintf(stderr, "%s: images differ; got:\n", what);
	for (i = 0; i < recipe_nimages(r); i++)
		fprintf(stderr, "  %s\n", recipe_image(r, i)->canonical);
	return 0;
}

/* Every images_by_file entry of the files read is a recorded use. */
static int
test_recipe_same_uses(
    const char *what, const struct recipe *r, const json_t *byfile)
{
	const struct recipe_image *img;
	const json_t *list, *e;
	const char *file, *canon, *svc;
	size_t f, k, i, u, want = 0, got = 0;
	int found;

	for (f = 0; f < recipe_nfiles(r); f++) {
		file = recipe_file(r, f);
		if ((list = json_object_get(byfile, file)) == NULL) {
			fprintf(stderr, "%s: '%s' not in images_by_file\n",
			    what, file);
			return 0;
		}
		json_array_foreach(list, k, e) {
			canon =
			    json_string_value(json_object_get(e, "canonical"));
			svc = json_string_value(json_object_get(e, "service"));
			found = 0;
			for (i = 0; i < recipe_nimages(r) && !found; i++) {
				img = recipe_image(r, i);
				if (strcmp(img->canonical, canon) != 0)
					continue;
				for (u = 0; u < img->nuses; u++)
					if (strcmp(img->uses[u].file, file) ==
						0 &&
					    strcmp(img->uses[u].service, svc) ==
						0 &&
					    img->uses[u].line > 0)
						found = 1;
			}
			if (!found) {
				fprintf(stderr,
				    "%s: no use of '%s' by '%s' "
				    "in '%s'\n",
				    what, canon, svc, file);
				return 0;
			}
			want++;
		}
	}
	for (i = 0; i < recipe_nimages(r); i++)
		got += recipe_image(r, i)->nuses;
	if (got != want) {
		fprintf(stderr, "%s: %zu uses, want %zu\n", what, got, want);
		return 0;
	}
	return 1;
}

/* 1 if the files read are want, in order (ordered) or as a set. */
static int
test_recipe_same_files(
    const char *what, const struct recipe *r, const json_t *want, int ordered)
{
	size_t i, j;
	int found;

	if (json_array_size(want) != recipe_nfiles(r))
		goto differ;
	for (i = 0; i < recipe_nfiles(r); i++) {
		if (ordered) {
			if (strcmp(recipe_file(r, i),
				json_string_value(json_array_get(want, i))) !=
			    0)
				goto differ;
			continue;
		}
		for (j = 0, found = 0; j < json_array_size(want); j++)
			if (strcmp(recipe_file(r, i),
				json_string_value(json_array_get(want, j))) ==
			    0)
				found = 1;
		if (!found)
			goto differ;
	}
	return 1;
differ:
	fprintf(stderr, "%s: files differ; got:", what);
	for (i = 0; i < recipe_nfiles(r); i++)
		fprintf(stderr, " %s", recipe_file(r, i));
	fprintf(stderr, "\n");
	return 0;
}

static void
test_recipe_fixtures(void)
{
	json_t *exp, *e;
	struct recipe *r;
	const char *name;
	char err[512], what[256];
	size_t n = 0;
	int ok = 1;

	CHECK((exp = test_recipe_expected()) != NULL);
	json_object_foreach(exp, name, e) {
		n++;
		snprintf(what, sizeof(what), "%s (default)", name);
		snprintf(err, sizeof(err), "recipes/%s", name);
		r = test_recipe_load(err, NULL, 0, err, sizeof(err));
		if (r == NULL) {
			fprintf(stderr, "%s: %s\n", what, err);
			ok = 0;
			continue;
		}
		ok &= test_recipe_same_images(
		    what, r, json_object_get(e, "default_images"));
		ok &= test_recipe_same_files(
		    what, r, json_object_get(e, "default_compose_file"), 1);
		ok &= test_recipe_same_uses(
		    what, r, json_object_get(e, "images_by_file"));
		recipe_free(r);

		snprintf(what, sizeof(what), "%s (all overlays)", name);
		snprintf(err, sizeof(err), "recipes/%s", name);
		r = test_recipe_load(
		    err, NULL, RECIPE_ALL_OVERLAYS, err, sizeof(err));
		if (r == NULL) {
			fprintf(stderr, "%s: %s\n", what, err);
			ok = 0;
			continue;
		}
		ok &= test_recipe_same_images(
		    what, r, json_object_get(e, "all_images"));
		ok &= test_recipe_same_files(
		    what, r, json_object_get(e, "compose_files"), 0);
		ok &= test_recipe_same_uses(
		    what, r, json_object_get(e, "images_by_file"));
		CHECK(strcmp(recipe_file(r, 0), "compose.yml") == 0);
		recipe_free(r);
	}
	json_decref(exp);
	CHECK(n == 8);
	CHECK(ok);
}

/* Every recipe directory on disk is in expected-images.json. */
static void
test_recipe_fixtures_listed(void)
{
	static const char *const parents[] = {"", "_real/"};
	char path[1024], key[512];
	struct dirent *de;
	struct stat st;
	json_t *exp;
	size_t i, n = 0;
	DIR *d;

	CHECK((exp = test_recipe_expected()) != NULL);
	for (i = 0; i < nitems(parents); i++) {
		snprintf(path, sizeof(path), "%s/recipes/%s",
		    test_recipe_datadir(), parents[i]);
		CHECK((d = opendir(path)) != NULL);
		while ((de = readdir(d)) != NULL) {
			snprintf(path, sizeof(path),
			    "%s/recipes/%s%s/compose.yml",
			    test_recipe_datadir(), parents[i], de->d_name);
			if (stat(path, &st) == -1)
				continue;
			snprintf(
			    key, sizeof(key), "%s%s", parents[i], de->d_name);
			if (json_object_get(exp, key) == NULL) {
				fprintf(
				    stderr, "'%s' has no expectations\n", key);
				unit_failed = 1;
			}
			n++;
		}
		closedir(d);
	}
	json_decref(exp);
	CHECK(n == 8);
}

static void
test_recipe_details(void)
{
	const struct recipe_image *img;
	struct recipe *r;
	char err[512];

	/* same image in two services: one image, two uses */
	CHECK((r = test_recipe_load(
		   "recipes/lasuite-docs", NULL, 0, err, sizeof(err))) != NULL);
	CHECK((img = recipe_image(r, 0)) != NULL);
	CHECK_STR(img->canonical, "docker.io/lasuite/impress-backend:v5.7.0");
	CHECK(img->nuses == 2);
	CHECK_STR(img->uses[0].service, "app");
	CHECK(img->uses[0].line == 11);
	CHECK_STR(img->uses[1].service, "celery");
	CHECK(img->uses[1].line == 35);
	CHECK_STR(img->ref.repo, "lasuite/impress-backend");
	CHECK_STR(recipe_version(r), "0.5.0+v5.7.0");
	CHECK(recipe_image(r, recipe_nimages(r)) == NULL);
	recipe_free(r);

	/* ${VAR:-default} pieces; the label of the new style */
	CHECK((r = test_recipe_load("recipes/_real/bonfire", NULL, 0, err,
		   sizeof(err))) != NULL);
	CHECK_STR(recipe_version(r), "2.0.1+1.0.6-social-amd64");
	CHECK((img = recipe_image(r, 1)) != NULL);
	CHECK_STR(img->canonical, "ghcr.io/baosystems/postgis:17-3.5");
	CHECK_STR(img->uses[0].file, "compose.postgres.yml");
	CHECK(img->uses[0].line == 17);
	recipe_free(r);

	/* the 2021 per-service labels are not a recipe version */
	CHECK((r = test_recipe_load("recipes/_real/traefik-2021", NULL, 0, err,
		   sizeof(err))) != NULL);
	CHECK(recipe_version(r) == NULL);
	recipe_free(r);

	CHECK((r = test_recipe_load(
		   "recipes/keycloak", NULL, 0, err, sizeof(err))) != NULL);
	CHECK((img = recipe_image(r, 1)) != NULL);
	CHECK_STR(img->canonical, "quay.io/keycloak/keycloak:26.3.3");
	CHECK(img->uses[0].line == 9);
	CHECK_STR(recipe_version(r), "10.3.0+26.3.3");
	recipe_free(r);
}

/* Loads sub and expects NULL with exactly want. */
static int
test_recipe_fails(const char *sub, enum recipe_flags flags, const char *want)
{
	struct recipe *r;
	char err[512];

	strcpy(err, "(unset)");
	if ((r = test_recipe_load(sub, NULL, flags, err, sizeof(err))) !=
	    NULL) {
		fprintf(stderr, "%s: loaded, want '%s'\n", sub, want);
		recipe_free(r);
		return 0;
	}
	if (strcmp(err, want) != 0) {
		fprintf(stderr, "%s: got '%s'\n%s: want '%s'\n", sub, err, sub,
		    want);
		return 0;
	}
	return 1;
}

static void
test_recipe_errors(void)
{
	struct recipe *r;
	char err[512], want[1200];

	CHECK(test_recipe_fails("recipes-bad/yaml-syntax", 0,
	    "compose.yml:6: did not find expected ',' or ']' while parsing a "
	    "flow sequence"));
	CHECK(test_recipe_fails("recipes-bad/floating", 0,
	    "compose.yml:6: floating reference 'nginx' (no tag or :latest); "
	    "pin it or pass --allow-floating"));
	CHECK(test_recipe_fails("recipes-bad/unset-var", 0,
	    "compose.yml:4: variable 'NGINX_IMAGE' is not set in .env.sample "
	    "and has no default"));
	CHECK(test_recipe_fails("recipes-bad/invalid-ref", 0,
	    "compose.yml:6: invalid image reference 'Nginx:1.27': uppercase in "
	    "repository name"));
	CHECK(test_recipe_fails("recipes-bad/missing-overlay", 0,
	    ".env.sample:3: cannot open 'compose.nope.yml' named by "
	    "COMPOSE_FILE: no such file"));
	CHECK(
	    test_recipe_fails("recipes-bad/overlay-error", RECIPE_ALL_OVERLAYS,
		"compose.extra.yml:5: found unexpected end of stream while "
		"scanning a quoted scalar"));
	CHECK(test_recipe_fails("recipes-bad/outside", 0,
	    ".env.sample:2: COMPOSE_FILE entry '../escape.yml' is outside the "
	    "recipe"));
	CHECK(test_recipe_fails("recipes-bad/no-compose", 0,
	    "cannot open 'compose.yml': no such file"));
	CHECK(test_recipe_fails("recipes-bad/bad-services", 0,
	    "compose.yml:3: services is not a mapping"));
	snprintf(want, sizeof(want),
	    "cannot open recipe '%s/recipes-bad/nope': No such file or "
	    "directory",
	    test_recipe_datadir());
	CHECK(test_recipe_fails("recipes-bad/nope", 0, want));
	snprintf(want, sizeof(want),
	    "cannot open recipe '%s/recipes-bad/README.md': Not a directory",
	    test_recipe_datadir());
	CHECK(test_recipe_fails("recipes-bad/README.md", 0, want));

	/* the overlay is not in the default set, so that load works */
	CHECK((r = test_recipe_load("recipes-bad/overlay-error", NULL, 0, err,
		   sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 1);
	recipe_free(r);

	/* --allow-floating: untagged is written as :latest, deduplicated */
	CHECK((r = test_recipe_load("recipes-bad/floating", NULL,
		   RECIPE_ALLOW_FLOATING, err, sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 3);
	CHECK_STR(
	    recipe_image(r, 0)->canonical, "docker.io/library/nginx:1.27.2");
	CHECK_STR(
	    recipe_image(r, 1)->canonical, "docker.io/library/nginx:latest");
	CHECK_STR(
	    recipe_image(r, 2)->canonical, "docker.io/library/redis:latest");
	recipe_free(r);
}

/* recipe_parse_compose_buf on a string; NULL-terminated yaml and env. */
static struct recipe *
test_recipe_buf(const char *yaml, const char *env, enum recipe_flags flags,
    char *err, size_t errlen)
{
	return recipe_parse_compose_buf("compose.yml", yaml, strlen(yaml), env,
	    env ? strlen(env) : 0, flags, err, errlen);
}

/* The one image of a one-service compose file, or "error: ...". */
static const char *
test_recipe_one(const char *image, const char *env, char *out, size_t len)
{
	struct recipe *r;
	char *yaml, err[512];

	xasprintf(&yaml, "services:\n  app:\n    image: '%s'\n", image);
	if ((r = test_recipe_buf(yaml, env, 0, err, sizeof(err))) == NULL)
		snprintf(out, len, "error: %s", err);
	else if (recipe_nimages(r) != 1)
		snprintf(out, len, "%zu images", recipe_nimages(r));
	else
		snprintf(out, len, "%s", recipe_image(r, 0)->canonical);
	recipe_free(r);
	free(yaml);
	return out;
}

static void
test_recipe_interp(void)
{
	static const char env[] = "# comment\n"
				  "export REG=ghcr.io\n"
				  "  NAME = team/app  # trailing comment\n"
				  "TAG=\"1.2\"\n"
				  "EMPTY=\n"
				  "LIT='$TAG'\n"
				  "ESC=\"a\\\"b\"\n"
				  "BOTH=${REG}/$NAME\n"
				  "#TAG=9.9\n"
				  "not an assignment\n";
	static const struct {
		const char *image, *want;
	} cases[] = {
	    {"$REG/$NAME:$TAG", "ghcr.io/team/app:1.2"},
	    {"${REG}/${NAME}:${TAG}", "ghcr.io/team/app:1.2"},
	    {"${BOTH}:${TAG}", "ghcr.io/team/app:1.2"},
	    {"${NOPE:-nginx}:${NOPE-1}", "docker.io/library/nginx:1"},
	    {"nginx:${EMPTY:-2}", "docker.io/library/nginx:2"},
	    {"nginx:3${EMPTY-x}", "docker.io/library/nginx:3"},
	    {"nginx:${NOPE:-${ALSO:-${TAG}}}", "docker.io/library/nginx:1.2"},
	    {"nginx:${TAG:+4}", "docker.io/library/nginx:4"},
	    {"nginx:5${NOPE:+x}", "docker.io/library/nginx:5"},
	    {"nginx:${TAG:?need a tag}", "docker.io/library/nginx:1.2"},
	    {"nginx:${NOPE:?need a tag}",
		"error: compose.yml:3: variable 'NOPE' is not set: need a "
		"tag"},
	    {"nginx:${NOPE}",
		"error: compose.yml:3: variable 'NOPE' is not set in "
		".env.sample and has no default"},
	    {"nginx:$NOPE",
		"error: compose.yml:3: variable 'NOPE' is not set in "
		".env.sample and has no default"},
	    {"nginx:$LIT",
		"error: compose.yml:3: invalid image reference "
		"'nginx:$TAG': invalid tag"},
	    {"nginx:$$1",
		"error: compose.yml:3: invalid image reference 'nginx:$1': "
		"invalid tag"},
	    {"nginx:$",
		"error: compose.yml:3: invalid interpolation in "
		"'nginx:$'"},
	    {"nginx:${1}",
		"error: compose.yml:3: invalid interpolation in "
		"'nginx:${1}'"},
	    {"nginx:${TAG",
		"error: compose.yml:3: invalid interpolation "
		"in 'nginx:${TAG'"},
	    {"nginx:${TAG:-1",
		"error: compose.yml:3: invalid "
		"interpolation in 'nginx:${TAG:-1'"},
	    {"${NOPE:-$${}nginx:3",
		"error: compose.yml:3: invalid image reference "
		"'${nginx:3': invalid repository name"},
	    {"${ESC}:1",
		"error: compose.yml:3: invalid image reference 'a\"b:1': "
		"invalid repository name"},
	    {"",
		"error: compose.yml:3: invalid image reference '': empty "
		"reference"},
	};
	char out[1024];
	size_t i;
	int ok = 1;

	for (i = 0; i < nitems(cases); i++) {
		test_recipe_one(cases[i].image, env, out, sizeof(out));
		if (strcmp(out, cases[i].want) != 0) {
			fprintf(stderr, "'%s': got '%s', want '%s'\n",
			    cases[i].image, out, cases[i].want);
			ok = 0;
		}
	}
	CHECK(ok);
}

static void
test_recipe_yaml_shapes(void)
{
	struct recipe *r;
	char err[512];

	/* merge keys from an x- extension field; label in mapping form */
	CHECK((r = test_recipe_buf("x-base: &base\n"
				   "  image: redis:7\n"
				   "x-more: &more\n"
				   "  <<: *base\n"
				   "services:\n"
				   "  a:\n"
				   "    <<: *base\n"
				   "  b:\n"
				   "    <<: [*more]\n"
				   "    deploy:\n"
				   "      labels:\n"
				   "        coop-cloud.${STACK_NAME}.version: "
				   "1.0.0+7\n"
				   "  c:\n"
				   "    <<: *base\n"
				   "    image: redis:8\n",
		   NULL, 0, err, sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 2);
	CHECK_STR(recipe_image(r, 0)->canonical, "docker.io/library/redis:7");
	CHECK(recipe_image(r, 0)->nuses == 2);
	CHECK(recipe_image(r, 0)->uses[0].line == 2);
	CHECK_STR(recipe_image(r, 1)->canonical, "docker.io/library/redis:8");
	CHECK_STR(recipe_version(r), "1.0.0+7");
	recipe_free(r);

	/* empty files, services: null, a service with nothing under it */
	CHECK((r = test_recipe_buf("", NULL, 0, err, sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 0);
	recipe_free(r);
	CHECK((r = test_recipe_buf("services:\n", NULL, 0, err, sizeof(err))) !=
	    NULL);
	recipe_free(r);
	CHECK((r = test_recipe_buf("services:\n  a:\n  b: ~\n", NULL, 0, err,
		   sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 0);
	recipe_free(r);

	/* a cycle through aliases does not loop */
	CHECK((r = test_recipe_buf("services:\n  a: &a\n    <<: *a\n", NULL, 0,
		   err, sizeof(err))) != NULL);
	recipe_free(r);

	CHECK(test_recipe_buf("- a\n", NULL, 0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:1: top level is not a mapping");
	CHECK(test_recipe_buf(
		  "services:\n  a: [x]\n", NULL, 0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:2: service 'a' is not a mapping");
	CHECK(test_recipe_buf("services:\n  a:\n    image: [x]\n", NULL, 0, err,
		  sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:3: image of service 'a' is not a string");
	CHECK(test_recipe_buf("services:\n  a:\n    image:\n", NULL, 0, err,
		  sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:3: image of service 'a' is not a string");
	CHECK(test_recipe_buf("services:\n  [a]: {image: x:1}\n", NULL, 0, err,
		  sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:2: service name is not a string");
	CHECK(test_recipe_buf("services:\n  a:\n    image: \"x\\0y:1\"\n", NULL,
		  0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "compose.yml:3: image of service 'a' has a NUL byte");
}

/* An in-memory recipe through recipe_load_src. */
struct test_recipe_mem {
	const char *const *files; /* name, content, name, content, NULL */
};

static int
test_recipe_mem_read(void *arg, const char *path, char **buf, size_t *len,
    char *err, size_t errlen)
{
	struct test_recipe_mem *m = arg;
	size_t i;

	(void)err;
	(void)errlen;
	for (i = 0; m->files[i] != NULL; i += 2) {
		if (strcmp(m->files[i], path) == 0) {
			*buf = xstrdup(m->files[i + 1]);
			*len = strlen(*buf);
			return 0;
		}
	}
	return 1;
}

static int
test_recipe_mem_list(
    void *arg, char ***names, size_t *n, char *err, size_t errlen)
{
	struct test_recipe_mem *m = arg;
	size_t i;

	(void)err;
	(void)errlen;
	*names = NULL;
	*n = 0;
	for (i = 0; m->files[i] != NULL; i += 2) {
		*names = xreallocarray(*names, *n + 1, sizeof(**names));
		(*names)[(*n)++] = xstrdup(m->files[i]);
	}
	return 0;
}

static void
test_recipe_src(void)
{
	static const char *const files[] = {
	    ".env.sample",
	    "COMPOSE_FILE=\"compose.yml\"\n"
	    "COMPOSE_FILE=\"$COMPOSE_FILE:compose.b.yml\"\n"
	    "# COMPOSE_FILE=\"$COMPOSE_FILE:compose.c.yml\"\n"
	    "COMPOSE_FILE=\"$COMPOSE_FILE: sub/compose.d.yml :\"\n"
	    "TAG=2\n",
	    "compose.yml",
	    "services:\n  a:\n    image: a:1\n",
	    "compose.b.yml",
	    "services:\n  b:\n    image: b:$TAG\n",
	    "compose.c.yml",
	    "services:\n  c:\n    image: c:1\n",
	    "sub/compose.d.yml",
	    "services:\n  d:\n    image: a:1\n",
	    "compose.yaml",
	    "not: loaded\n",
	    "other.yml",
	    "services:\n  e:\n    image: e\n",
	    NULL,
	};
	struct test_recipe_mem m = {files};
	struct recipe_src src = {
	    test_recipe_mem_read, test_recipe_mem_list, &m};
	struct recipe *r;
	char err[512];

	CHECK((r = recipe_load_src(&src, 0, err, sizeof(err))) != NULL);
	CHECK(recipe_nfiles(r) == 3);
	CHECK_STR(recipe_file(r, 2), "sub/compose.d.yml");
	CHECK(recipe_nimages(r) == 2);
	CHECK_STR(recipe_image(r, 0)->canonical, "docker.io/library/a:1");
	CHECK(recipe_image(r, 0)->nuses == 2);
	CHECK_STR(recipe_image(r, 0)->uses[1].file, "sub/compose.d.yml");
	CHECK_STR(recipe_image(r, 1)->canonical, "docker.io/library/b:2");
	recipe_free(r);

	CHECK((r = recipe_load_src(
		   &src, RECIPE_ALL_OVERLAYS, err, sizeof(err))) != NULL);
	CHECK(recipe_nfiles(r) == 4);
	CHECK_STR(recipe_file(r, 3), "compose.c.yml");
	CHECK(recipe_nimages(r) == 3);
	recipe_free(r);
}

/* Runs cmd (a new string, freed here) with sh; 0 on success. */
static int
test_recipe_sh(char *cmd)
{
	int rc;

	rc = system(cmd);
	free(cmd);
	return rc;
}

static void
test_recipe_git(void)
{
	char tmpl[] = "/tmp/test_recipe.XXXXXX", err[512];
	struct recipe *r = NULL;
	char *dir, *cmd;

	if (system("git --version >/dev/null 2>&1") != 0) {
		fprintf(stderr, "git not installed; skipping\n");
		return;
	}
	CHECK((dir = mkdtemp(tmpl)) != NULL);
	xasprintf(&cmd,
	    "cp -r '%s/recipes/n8n/.' '%s' && cd '%s' && mkdir sub && "
	    "cp -r ./compose*.yml .env.sample sub/ && git init -q && "
	    "git add -A && git -c user.name=t -c user.email=t@example.com "
	    "-c commit.gpgsign=false commit -qm v1 && "
	    "git tag 3.0.0+2.23.4 && "
	    "sed -i 's/n8n:2.23.4/n8n:2.24.0/' compose.yml && "
	    "rm compose.runners.yml",
	    test_recipe_datadir(), dir, dir);
	CHECK(test_recipe_sh(cmd) == 0);

	/* the tag, not the working tree */
	r = recipe_load(
	    dir, "3.0.0+2.23.4", RECIPE_ALL_OVERLAYS, err, sizeof(err));
	if (r == NULL)
		fprintf(stderr, "%s\n", err);
	CHECK(r != NULL);
	CHECK(recipe_nimages(r) == 3);
	CHECK_STR(recipe_image(r, 1)->canonical, "docker.io/n8nio/n8n:2.23.4");
	CHECK_STR(recipe_version(r), "3.0.0+2.23.4");
	recipe_free(r);

	CHECK((r = recipe_load(
		   dir, NULL, RECIPE_ALL_OVERLAYS, err, sizeof(err))) != NULL);
	CHECK(recipe_nimages(r) == 2);
	CHECK_STR(recipe_image(r, 1)->canonical, "docker.io/n8nio/n8n:2.24.0");
	recipe_free(r);

	/* a recipe in a subdirectory of the repository */
	xasprintf(&cmd, "%s/sub", dir);
	r = recipe_load(
	    cmd, "3.0.0+2.23.4", RECIPE_ALL_OVERLAYS, err, sizeof(err));
	free(cmd);
	CHECK(r != NULL);
	CHECK(recipe_nimages(r) == 3);
	CHECK(recipe_nfiles(r) == 3);
	recipe_free(r);

	CHECK(recipe_load(dir, "nope", 0, err, sizeof(err)) == NULL);
	CHECK(strncmp(err, "cannot read version 'nope' of '", 31) == 0);
	CHECK(recipe_load(dir, "--output=x", 0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "invalid version '--output=x'");
	CHECK(
	    recipe_load(dir, "HEAD:compose.yml", 0, err, sizeof(err)) == NULL);
	CHECK_STR(err, "invalid version 'HEAD:compose.yml'");

	xasprintf(&cmd, "rm -rf '%s'", dir);
	CHECK(test_recipe_sh(cmd) == 0);
}

static const struct unit_test test_recipe_tests[] = {
    {"fixtures", test_recipe_fixtures},
    {"fixtures_listed", test_recipe_fixtures_listed},
    {"details", test_recipe_details},
    {"errors", test_recipe_errors},
    {"interp", test_recipe_interp},
    {"yaml_shapes", test_recipe_yaml_shapes},
    {"src", test_recipe_src},
    {"git", test_recipe_git},
};

UNIT_MAIN("recipe", test_recipe_tests)
