/*
 * tests/fuzz/fuzz_recipe.c: libFuzzer target for the compose parsing core,
 * recipe_parse_compose_buf() (prewarm/recipe.c).  Input: compose YAML, then
 * optionally a NUL byte and .env.sample text; without one a small fixed
 * .env.sample is used.  Every image found must reparse to its canonical.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../prewarm/prewarm.h"

#define FUZZ_MAX_LEN (64 * 1024)

static const char fuzz_recipe_env[] = "TAG=1.2\n"
				      "REG=ghcr.io\n"
				      "EMPTY=\n"
				      "COMPOSE_FILE=\"compose.yml\"\n"
				      "COMPOSE_FILE=\"$COMPOSE_FILE:x.yml\"\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_recipe_check(const struct recipe *r)
{
	const struct recipe_image *img;
	char canon[REF_STRLEN];
	struct ref ref;
	const char *why;
	size_t i;

	for (i = 0; i < recipe_nimages(r); i++) {
		img = recipe_image(r, i);
		if (img->nuses == 0 || img->uses[0].line == 0)
			abort();
		if (ref_parse(&ref, img->canonical, &why) == -1)
			abort();
		ref_format(&ref, canon, sizeof(canon));
		if (strcmp(canon, img->canonical) != 0)
			abort();
		if (i > 0 &&
		    strcmp(recipe_image(r, i - 1)->canonical, canon) >= 0)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *yaml = (const char *)data, *env = fuzz_recipe_env, *nul;
	size_t ylen = size, elen = sizeof(fuzz_recipe_env) - 1;
	struct recipe *r;
	char err[512];
	int flags;

	if (size > FUZZ_MAX_LEN)
		return 0;
	if ((nul = memchr(data, '\0', size)) != NULL) {
		ylen = nul - yaml;
		env = nul + 1;
		elen = size - ylen - 1;
	}
	for (flags = 0; flags <= RECIPE_ALLOW_FLOATING;
	     flags += RECIPE_ALLOW_FLOATING) {
		err[0] = 'x';
		r = recipe_parse_compose_buf("compose.yml", yaml, ylen, env,
		    elen, (enum recipe_flags)flags, err, sizeof(err));
		if (r == NULL) {
			if (err[0] == '\0' || strchr(err, '\n') != NULL)
				abort(); /* one line, never empty */
			continue;
		}
		fuzz_recipe_check(r);
		recipe_free(r);
	}
	return 0;
}
