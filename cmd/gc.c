/*
 * cmd/gc.c: `ccprewarm gc`: the eviction policy on demand.  Through a
 * running server's admin API (GET gc plans, POST gc runs), or on a data
 * directory no server holds (--data).  --dry-run lists exactly what a real
 * run would free: every idle partial file, then least recently used
 * unpinned content down to the budget's low water mark.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

static const char *const gc_kind_names[] = {"partial", "blob", "manifest"};

static void
gc_print_item(
    const char *kind, const char *digest, json_int_t size, json_int_t when)
{
	char ts[32] = "-";
	time_t t = (time_t)when;
	struct tm tm;

	if (when > 0 && gmtime_r(&t, &tm) != NULL)
		strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%-8s %s %12lld %s\n", kind, digest, (long long)size, ts);
}

/* Prints the server's (or our own) JSON answer; 0 or -1. */
static int
gc_print(const char *body, int as_json)
{
	json_t *root, *items, *it;
	json_error_t jerr;
	size_t i;

	if (as_json) {
		printf("%s\n", body);
		return 0;
	}
	if ((root = json_loads(body, 0, &jerr)) == NULL) {
		log_error("gc: cannot parse the answer: %s", jerr.text);
		return -1;
	}
	items = json_object_get(root, "items");
	json_array_foreach(items, i, it) {
		gc_print_item(json_string_value(json_object_get(it, "kind")),
		    json_string_value(json_object_get(it, "digest")),
		    json_integer_value(json_object_get(it, "size")),
		    json_integer_value(json_object_get(it, "last_access")));
	}
	printf("%s: %lld item%s, %lld bytes\n",
	    json_is_true(json_object_get(root, "dry_run")) ? "would free"
							   : "freed",
	    (long long)json_integer_value(json_object_get(root, "count")),
	    json_integer_value(json_object_get(root, "count")) == 1 ? "" : "s",
	    (long long)json_integer_value(json_object_get(root, "bytes")));
	if (json_is_true(json_object_get(root, "pins_over_budget")))
		printf("warning: pinned content alone exceeds the budget\n");
	json_decref(root);
	return 0;
}

/* On a data directory: the same plan as the daemon's, carried out here. */
static int
gc_offline(
    const char *data, const struct lru_budget *budget, int dry, int as_json)
{
	struct blobstore *bs = NULL;
	struct db *db = NULL;
	struct lru_item *items = NULL;
	struct lru_usage u;
	struct digest *man = NULL;
	struct db_blob b;
	uint64_t pinned = 0, total = 0, partial = 0;
	size_t n = 0, i, nman = 0, count = 0;
	char *index = NULL, ds[DIGEST_STRLEN];
	json_t *root = NULL, *arr;
	char *s;
	int rc = 1;

	xasprintf(&index, "%s/index", data);
	if ((bs = blobstore_open(data)) == NULL ||
	    (db = db_open(index)) == NULL)
		goto out;
	if (lru_collect(bs, db, &items, &n, &pinned) == -1)
		goto out;
	memset(&u, 0, sizeof u);
	for (i = 0; i < n; i++)
		if (items[i].kind == LRU_PARTIAL)
			partial += items[i].size;
	u.used = db_store_bytes(db) + partial;
	if (blobstore_statfs(bs, &u.fs_total, &u.fs_avail) == -1)
		goto out;
	lru_plan(items, n, lru_need(budget, &u, 0, 1), 1);
	man = xcalloc(n + 1, sizeof *man);
	arr = json_array();
	for (i = 0; i < n; i++) {
		struct lru_item *it = &items[i];

		if (!it->chosen)
			continue;
		if (!dry) {
			if (it->kind == LRU_PARTIAL) {
				if (blobstore_partial_remove(bs, &it->digest) ==
				    -1)
					continue;
			} else {
				if (db_blob_evict(db, &it->digest,
					it->last_access, &b) != 0)
					continue;
				if (b.media_type[0] != '\0')
					man[nman++] = it->digest;
				if (blobstore_remove(bs, &it->digest) == -1 &&
				    errno != ENOENT)
					log_warn("gc: cannot remove a blob: %s",
					    strerror(errno));
			}
		}
		digest_format(&it->digest, ds);
		json_array_append_new(arr,
		    json_pack("{s:s,s:s,s:I,s:I}", "kind",
			gc_kind_names[it->kind], "digest", ds, "size",
			(json_int_t)it->size, "last_access",
			(json_int_t)it->last_access));
		total += it->size;
		count++;
	}
	if (nman > 0 && db_tags_drop(db, man, nman) == -1)
		goto out;
	root = json_pack("{s:b,s:o,s:I,s:I,s:I,s:I,s:b}", "dry_run", dry,
	    "items", arr, "count", (json_int_t)count, "bytes",
	    (json_int_t)total, "store_bytes", (json_int_t)db_store_bytes(db),
	    "pinned_bytes", (json_int_t)pinned, "pins_over_budget",
	    budget->max_bytes > 0 && pinned > budget->max_bytes);
	s = json_dumps(root, JSON_COMPACT);
	rc = gc_print(s, as_json) == 0 ? 0 : 1;
	free(s);
out:
	json_decref(root);
	free(man);
	free(items);
	db_free(db);
	blobstore_free(bs);
	free(index);
	return rc;
}

int
gc_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dry-run", no_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"server", required_argument, NULL, 's'},
	    {"data", required_argument, NULL, 'd'},
	    {"config", required_argument, NULL, 'c'},
	    {"max-bytes", required_argument, NULL, 'M'},
	    {"min-free-bytes", required_argument, NULL, 'F'},
	    {"min-free-percent", required_argument, NULL, 'P'},
	    {NULL, 0, NULL, 0},
	};
	const char *server = NULL, *data = NULL, *config = NULL;
	const char *maxb = NULL, *minfree = NULL, *minpct = NULL;
	struct client_reply rep;
	struct lru_budget budget;
	struct config cfg;
	char *url = NULL;
	int dry = 0, as_json = 0, c, rc = 1;

	config_init(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			dry = 1;
			break;
		case 'j':
			as_json = 1;
			break;
		case 's':
			server = optarg;
			break;
		case 'd':
			data = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'M':
			maxb = optarg;
			break;
		case 'F':
			minfree = optarg;
			break;
		case 'P':
			minpct = optarg;
			break;
		default:
			fprintf(stderr,
			    "usage: ccprewarm gc [--dry-run] [--json] "
			    "[--server URL | --data DIR [--config FILE]]\n");
			goto out;
		}
	}
	if (optind != argc || (server != NULL && data != NULL)) {
		log_error(
		    "gc: give --server URL or --data DIR, not both, and no other arguments");
		goto out;
	}
	if (data == NULL) {
		if (config != NULL || maxb != NULL || minfree != NULL ||
		    minpct != NULL) {
			log_error(
			    "gc: budget flags apply to --data only; a server uses its own configuration");
			goto out;
		}
		xasprintf(&url, "%s/_ccprewarm/v1/gc",
		    server != NULL ? server : client_default_server());
		if (client_request(dry ? "GET" : "POST", url, dry ? NULL : "{}",
			&rep) == -1) {
			log_error("gc: cannot reach the server at '%s': %s",
			    url, rep.error);
			goto out;
		}
		if (rep.status != 200)
			log_error("gc: the server answered %ld: %.300s",
			    rep.status, rep.body);
		else
			rc = gc_print(rep.body, as_json) == 0 ? 0 : 1;
		free(rep.body);
		goto out;
	}
	if (config != NULL)
		config_load_file(&cfg, config);
	if (maxb != NULL)
		config_set_bytes(
		    &cfg, "--max-bytes", maxb, &cfg.opts.max_bytes);
	if (minfree != NULL)
		config_set_bytes(&cfg, "--min-free-bytes", minfree,
		    &cfg.opts.min_free_bytes);
	if (minpct != NULL)
		cfg.opts.min_free_percent = atoi(minpct);
	if (cfg.errors > 0)
		goto out;
	memset(&budget, 0, sizeof budget);
	budget.max_bytes = cfg.opts.max_bytes;
	budget.min_free_bytes = cfg.opts.min_free_bytes;
	budget.min_free_percent = (unsigned)cfg.opts.min_free_percent;
	budget.low_water_percent = (unsigned)cfg.opts.low_water_percent;
	rc = gc_offline(data, &budget, dry, as_json);
out:
	free(url);
	config_release(&cfg);
	return rc;
}
