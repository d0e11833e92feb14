/*
 * cmd/sharedgc.c: `ccprewarm shared-gc`: deletes from the shared bucket
 * every blob that no node's published pin set ("<prefix>pins/<node>.txt")
 * names and that is older than --min-age.  Runs its own event loop and
 * transfer engine; the daemon need not run.  A pin set that cannot be read,
 * or none at all, stops it before anything is deleted.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../common/common.h"
#include "cmd.h"

enum sharedgc_phase {
	SHAREDGC_LIST_PINS,
	SHAREDGC_GET_PINS,
	SHAREDGC_LIST_BLOBS,
	SHAREDGC_DELETE,
	SHAREDGC_DONE,
};

struct sharedgc {
	struct event_base *base;
	struct s3 *s3;
	enum sharedgc_phase phase;
	struct s3_xfer *x;
	char token[1024];
	char **pins; /* pin set keys */
	size_t npins, pin_next;
	char *body; /* the pin set being read */
	size_t blen;
	struct digest *keep; /* sorted */
	size_t nkeep;
	char **victims;
	size_t nvictims, victim_next;
	uint64_t victim_bytes, deleted, deleted_bytes;
	size_t blobs, kept, young;
	int64_t min_age_s;
	int dry_run;
	int failed;
};

static void sharedgc_next(struct sharedgc *);

static void
sharedgc_fail(struct sharedgc *gc, const char *what, const char *why)
{
	log_error("shared-gc: %s: %s; nothing deleted", what,
	    why != NULL ? why : "failed");
	gc->failed = 1;
	gc->phase = SHAREDGC_DONE;
	event_base_loopexit(gc->base, NULL);
}

static int
sharedgc_body_cb(void *arg, const void *buf, size_t len)
{
	struct sharedgc *gc = arg;

	if (gc->blen + len > 64 * 1024 * 1024)
		return -1;
	gc->body = xreallocarray(gc->body, gc->blen + len + 1, 1);
	memcpy(gc->body + gc->blen, buf, len);
	gc->blen += len;
	gc->body[gc->blen] = '\0';
	return 0;
}

static int
sharedgc_pin_key_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
	struct sharedgc *gc = arg;
	size_t len = strlen(key);

	(void)size;
	(void)mtime;
	if (len < 4 || strcmp(key + len - 4, ".txt") != 0)
		return 0;
	gc->pins = xreallocarray(gc->pins, gc->npins + 1, sizeof *gc->pins);
	gc->pins[gc->npins++] = xstrdup(key);
	return 0;
}

static int
sharedgc_digest_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct digest));
}

static int
sharedgc_blob_cb(void *arg, const char *key, int64_t size, int64_t mtime)
{
	struct sharedgc *gc = arg;
	const char *hex = strrchr(key, '/');
	char ds[DIGEST_STRLEN + 8];
	struct digest d;

	if (hex == NULL)
		return 0;
	snprintf(ds, sizeof ds, "sha256:%s", hex + 1);
	if (digest_parse(&d, ds) == -1)
		return 0; /* not one of ours */
	gc->blobs++;
	if (gc->nkeep > 0 &&
	    bsearch(&d, gc->keep, gc->nkeep, sizeof d, sharedgc_digest_cmp) !=
		NULL) {
		gc->kept++;
		return 0;
	}
	if (mtime == 0 || clock_wall_s() - mtime < gc->min_age_s) {
		gc->young++;
		return 0;
	}
	gc->victims =
	    xreallocarray(gc->victims, gc->nvictims + 1, sizeof *gc->victims);
	gc->victims[gc->nvictims++] = xstrdup(key);
	gc->victim_bytes += size > 0 ? (uint64_t)size : 0;
	return 0;
}

/* One pin set: "sha256:<hex>" lines. */
static int
sharedgc_parse_pins(struct sharedgc *gc, const char *key)
{
	char *line, *save = NULL;
	struct digest d;
	int n = 0;

	if (gc->body == NULL)
		return 0; /* a node that pins nothing */

	for (line = strtok_r(gc->body, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		n++;
		if (line[0] == '\0')
			continue;
		if (digest_parse(&d, line) == -1) {
			log_error("shared-gc: pin set '%s' line %d is not a "
				  "digest",
			    key, n);
			return -1;
		}
		gc->keep = xreallocarray(gc->keep, gc->nkeep + 1, sizeof d);
		gc->keep[gc->nkeep++] = d;
	}
	return 0;
}

static void
sharedgc_done_cb(void *arg, enum s3_result res, const char *why)
{
	struct sharedgc *gc = arg;
	const char *xml = gc->x != NULL ? s3_xfer_xml(gc->x) : NULL;
	const char *key;

	gc->x = NULL;
	switch (gc->phase) {
	case SHAREDGC_LIST_PINS:
	case SHAREDGC_LIST_BLOBS:
		if (res != S3_OK) {
			sharedgc_fail(gc, "cannot list the bucket", why);
			return;
		}
		if (s3_list_each(xml,
			gc->phase == SHAREDGC_LIST_PINS ? sharedgc_pin_key_cb
							: sharedgc_blob_cb,
			gc, gc->token, sizeof gc->token) == -1) {
			sharedgc_fail(gc, "cannot read a listing", NULL);
			return;
		}
		if (gc->token[0] == '\0')
			gc->phase++;
		break;
	case SHAREDGC_GET_PINS:
		key = gc->pins[gc->pin_next];
		if (res != S3_OK) {
			log_error("shared-gc: cannot read pin set '%s'", key);
			sharedgc_fail(gc, "a pin set is unreadable", why);
			return;
		}
		if (sharedgc_parse_pins(gc, key) == -1) {
			sharedgc_fail(gc, "a pin set is unreadable", NULL);
			return;
		}
		free(gc->body);
		gc->body = NULL;
		gc->blen = 0;
		gc->pin_next++;
		break;
	case SHAREDGC_DELETE:
		if (res != S3_OK && res != S3_ENOTFOUND)
			log_warn("shared-gc: cannot delete '%s': %s",
			    gc->victims[gc->victim_next],
			    why != NULL ? why : "failed");
		else
			gc->deleted++;
		gc->victim_next++;
		break;
	case SHAREDGC_DONE:
		return;
	}
	sharedgc_next(gc);
}

/* Starts the next request of the current phase (or moves on). */
static void
sharedgc_next(struct sharedgc *gc)
{
	static const struct s3_cbs cbs = {NULL, NULL, sharedgc_done_cb};
	static const struct s3_cbs get_cbs = {
	    NULL, sharedgc_body_cb, sharedgc_done_cb};
	const char *prefix = s3_prefix(gc->s3);

	for (;;) {
		switch (gc->phase) {
		case SHAREDGC_LIST_PINS:
			gc->x = s3_list(gc->s3, "pins/",
			    gc->token[0] != '\0' ? gc->token : NULL, &cbs, gc);
			break;
		case SHAREDGC_GET_PINS:
			if (gc->npins == 0) {
				sharedgc_fail(gc,
				    "no node has published a pin set",
				    "refusing to delete every blob");
				return;
			}
			if (gc->pin_next == gc->npins) {
				if (gc->nkeep > 0) /* NULL when empty */
					qsort(gc->keep, gc->nkeep,
					    sizeof *gc->keep,
					    sharedgc_digest_cmp);
				gc->phase++;
				continue;
			}
			gc->x = s3_object_get(gc->s3,
			    gc->pins[gc->pin_next] + strlen(prefix), &get_cbs,
			    gc);
			break;
		case SHAREDGC_LIST_BLOBS:
			gc->x = s3_list(gc->s3, "blobs/sha256/",
			    gc->token[0] != '\0' ? gc->token : NULL, &cbs, gc);
			break;
		case SHAREDGC_DELETE:
			if (gc->dry_run || gc->victim_next == gc->nvictims) {
				gc->phase++;
				continue;
			}
			gc->x = s3_object_delete(gc->s3,
			    gc->victims[gc->victim_next] + strlen(prefix), &cbs,
			    gc);
			break;
		case SHAREDGC_DONE:
			event_base_loopexit(gc->base, NULL);
			return;
		}
		if (gc->x == NULL)
			sharedgc_fail(
			    gc, "the shared store is unavailable", NULL);
		return;
	}
}

static void
sharedgc_release(struct sharedgc *gc)
{
	size_t i;

	for (i = 0; i < gc->npins; i++)
		free(gc->pins[i]);
	for (i = 0; i < gc->nvictims; i++)
		free(gc->victims[i]);
	free(gc->pins);
	free(gc->victims);
	free(gc->keep);
	free(gc->body);
}

int
sharedgc_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"min-age", required_argument, NULL, 'm'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	struct upstream_client *uc = NULL;
	struct sharedgc gc;
	struct config cfg;
	const char *config_file = NULL;
	char *ep;
	int c, rc = 1;

	memset(&gc, 0, sizeof gc);
	gc.min_age_s = 3600;
	config_init(&cfg);
	while ((c = getopt_long(argc, argv, "c:m:n", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_file = optarg;
			break;
		case 'm':
			gc.min_age_s = strtoll(optarg, &ep, 10);
			if (*ep != '\0' || ep == optarg || gc.min_age_s < 0) {
				log_error("--min-age: '%s' is not a number of "
					  "seconds",
				    optarg);
				goto out;
			}
			break;
		case 'n':
			gc.dry_run = 1;
			break;
		default:
			fprintf(stderr,
			    "usage: ccprewarm shared-gc --config FILE "
			    "[--min-age SECONDS] [--dry-run]\n");
			goto out;
		}
	}
	if (config_file == NULL) {
		log_error("shared-gc needs --config FILE with a shared_store");
		goto out;
	}
	if (config_load_file(&cfg, config_file) == -1 ||
	    config_finish(&cfg) == -1)
		goto out;
	if (cfg.opts.shared_store.url == NULL) {
		log_error("'%s' has no shared_store", config_file);
		goto out;
	}
	if ((gc.base = event_base_new()) == NULL)
		fatal("cannot create the event base");
	uc = upstream_client_new(gc.base, NULL);
	gc.s3 = s3_new(gc.base, uc, &cfg.opts.shared_store);
	sharedgc_next(&gc);
	if (!gc.failed)
		event_base_dispatch(gc.base);
	if (gc.failed)
		goto out;
	printf("shared-gc: %zu pin set%s naming %zu digests; %zu blobs in "
	       "bucket '%s': %zu pinned, %zu younger than %" PRId64
	       " s, %s %zu (%" PRIu64 " bytes)\n",
	    gc.npins, gc.npins == 1 ? "" : "s", gc.nkeep, gc.blobs,
	    s3_bucket(gc.s3), gc.kept, gc.young, gc.min_age_s,
	    gc.dry_run ? "would delete" : "deleted",
	    gc.dry_run ? gc.nvictims : (size_t)gc.deleted, gc.victim_bytes);
	rc = gc.dry_run || gc.deleted == gc.nvictims ? 0 : 1;
out:
	s3_free(gc.s3);
	upstream_client_free(uc);
	if (gc.base != NULL)
		event_base_free(gc.base);
	sharedgc_release(&gc);
	config_release(&cfg);
	return rc;
}
