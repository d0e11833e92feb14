/*
 * prewarm/prewarm.h: turning a Co-op Cloud recipe into images and images
 * into warm caches.  Sections follow the files: recipe.c (compose files ->
 * normalised references).  No libyaml type appears here.
 */
#ifndef PREWARM_H
#define PREWARM_H

#include <stddef.h>
#include <stdint.h>

#include "../registry/registry.h"

/* recipe.c: recipe directory (or a git tag of it) -> image list ---------- */

enum recipe_flags {
	/* Every compose*.yml in the recipe, not just COMPOSE_FILE's set. */
	RECIPE_ALL_OVERLAYS = (1 << 0),
	/* Accept untagged and ":latest" references instead of failing. */
	RECIPE_ALLOW_FLOATING = (1 << 1),
};

/* Where an image is used: borrowed from the recipe, like everything here. */
struct recipe_use {
	const char *file;    /* "compose.yml", as named in the recipe */
	size_t line;	     /* 1-based line of the image: value */
	const char *service; /* "app" */
};

/* One distinct image (by canonical string) and every place it is used. */
struct recipe_image {
	struct ref ref;
	char canonical[REF_STRLEN];    /* ref_format() of ref */
	const struct recipe_use *uses; /* in file order, then line order */
	size_t nuses;
};

/*
 * Where the recipe's files come from: a directory, a git tag of one, or
 * anything a caller (a test) supplies.  Paths are relative to the recipe.
 */
struct recipe_src {
	/*
	 * Reads path into *buf, a new NUL-terminated buffer of *len bytes
	 * (the caller frees it).  Returns 0, 1 if the file does not exist,
	 * or -1 with a one-line reason in err.
	 */
	int (*read)(void *arg, const char *path, char **buf, size_t *len,
	    char *err, size_t errlen);
	/*
	 * Lists the file names at the top of the recipe into *names, a new
	 * array of new strings (the caller frees them).  0, or -1 with err.
	 */
	int (*list)(
	    void *arg, char ***names, size_t *n, char *err, size_t errlen);
	void *arg;
};

/* A loaded recipe: its images, files and version label. */
struct recipe;

/*
 * Loads the recipe in dir: .env.sample's COMPOSE_FILE set (or compose.yml
 * alone), or with RECIPE_ALL_OVERLAYS every compose*.yml as well.  With a
 * version, the files are read with "git -C dir show version:path" and the
 * working tree is not touched; that runs git and blocks, so it belongs in
 * the CLI, never on the daemon's loop.  Images are the union over the
 * files read: an overlay that replaces a service's image adds one, nothing
 * is dropped (pre-warming one image too many is cheap, one too few is not).
 * ${VAR} in image: takes values from .env.sample only, never from the
 * environment.  Returns a new recipe, or NULL with one line in err:
 * "compose.yml:12: <reason>" when a place is known.
 */
struct recipe *recipe_load(const char *dir, const char *version,
    enum recipe_flags, char *err, size_t errlen);
/* As recipe_load, with the files from src. */
struct recipe *recipe_load_src(
    const struct recipe_src *, enum recipe_flags, char *err, size_t errlen);
/*
 * The parsing core on its own (fuzzers, tests): one compose file's bytes
 * named file, with env the text of a .env.sample (NULL for none).
 */
struct recipe *recipe_parse_compose_buf(const char *file, const char *yaml,
    size_t len, const char *env, size_t envlen, enum recipe_flags, char *err,
    size_t errlen);
void recipe_free(struct recipe *); /* NULL-safe */

/* Distinct images, sorted by canonical string; borrowed from the recipe. */
size_t recipe_nimages(const struct recipe *);
const struct recipe_image *recipe_image(const struct recipe *, size_t i);
/* The compose files read, in load order (compose.yml first). */
size_t recipe_nfiles(const struct recipe *);
const char *recipe_file(const struct recipe *, size_t i);
/*
 * The recipe version from a "coop-cloud.${STACK_NAME}.version=<v>" deploy
 * label, or NULL if no service has one.
 */
const char *recipe_version(const struct recipe *);

/*
 * The release tags of a recipe checkout: "git -C dir tag --list" (local
 * only, never a fetch; blocks: CLI only).  *tags is a new array of new
 * strings (the caller frees them).  0 (none is fine), or -1 with err.
 * 1 if dir is not the top of a git checkout (no dir/.git).
 */
int recipe_tags(
    const char *dir, char ***tags, size_t *n, char *err, size_t errlen);

/* version.c: Co-op Cloud versions "<recipe-semver>+<upstream-version>" -- */

struct version {
	unsigned long major, minor, patch;
	char pre[64]; /* semver pre-release ("rc1"); "" for a release */
};

/* 0 if tag is "<MAJOR.MINOR.PATCH[-PRE]>+<upstream>", else -1. */
int version_parse(const char *tag, struct version *);
/* 1 for such a tag with no pre-release part. */
int version_is_release(const char *tag);
/*
 * Semver precedence of the recipe part (the upstream part only breaks
 * ties); a pre-release sorts below its release; strings that are not
 * versions sort below every version.  <0, 0, >0 like strcmp.
 */
int version_cmp(const char *a, const char *b);
/* Sorts tags newest first (in place). */
void version_sort_desc(char **tags, size_t n);
/*
 * The window: sorts tags newest first and puts the n newest releases
 * (pre-releases and other tags are never in a window) into out (borrowed
 * from tags).  Returns how many there are (at most n).
 */
size_t version_window(char **tags, size_t ntags, size_t n, char **out);

/* job.c: the daemon's pre-warm engine --------------------------------- */

struct prewarm;

/*
 * Loads enrolments from LMDB, registers the admin commands (enroll,
 * recipes, recipes/NAME, warm) and per-recipe metrics, and resumes jobs
 * that were interrupted.  platforms: "linux/amd64", ...; none means this
 * machine's own.  NULL (logged) on error.
 */
struct prewarm *prewarm_new(
    struct server *, const char *const *platforms, size_t nplatforms);
void prewarm_free(struct prewarm *); /* NULL-safe */
/* The default --versions for the CLI (config recipe_versions; 2). */
void prewarm_set_versions(struct prewarm *, int64_t n);

#endif
