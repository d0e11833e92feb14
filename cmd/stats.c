/*
 * cmd/stats.c: `ccprewarm stats`: the daemon's counters, human-readable or
 * as JSON, and `--diff BEFORE.json`, what changed since a saved snapshot.
 * The diff uses the store-lifetime counters, which survive a restart of
 * the daemon between the two snapshots.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/common.h"
#include "cmd.h"

static uint64_t
stats_u64(json_t *root, const char *a, const char *b)
{
	json_t *v = json_object_get(root, a);

	if (b != NULL)
		v = json_object_get(v, b);
	return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static void
stats_ratio(char *buf, size_t len, uint64_t hits, uint64_t misses)
{
	if (hits + misses == 0)
		xstrlcpy(buf, "-", len);
	else
		snprintf(buf, len, "%.1f%%",
		    100.0 * (double)hits / (double)(hits + misses));
}

static void
stats_print(json_t *now, const char *server)
{
	char a[32], b[32];
	uint64_t ph, pm, sh, sm;

	ph = stats_u64(json_object_get(now, "process"), "hits", "blob") +
	    stats_u64(json_object_get(now, "process"), "hits", "manifest");
	pm = stats_u64(json_object_get(now, "process"), "misses", "blob") +
	    stats_u64(json_object_get(now, "process"), "misses", "manifest");
	sh = stats_u64(now, "store", "hits");
	sm = stats_u64(now, "store", "misses");
	printf("ccprewarm %s at %s\n\n",
	    json_string_value(json_object_get(now, "version")), server);
	printf("%-18s %18s %22s\n", "", "since start", "since store created");
	printf("%-18s %18" PRIu64 " %22" PRIu64 "\n", "hits", ph, sh);
	printf("%-18s %18" PRIu64 " %22" PRIu64 "\n", "misses", pm, sm);
	stats_ratio(a, sizeof a, ph, pm);
	stats_ratio(b, sizeof b, sh, sm);
	printf("%-18s %18s %22s\n", "hit ratio", a, b);
	printf("%-18s %18s", "bytes saved",
	    human_bytes(stats_u64(now, "process", "bytes_saved"), a, sizeof a));
	printf(" %22s\n",
	    human_bytes(stats_u64(now, "store", "bytes_saved"), b, sizeof b));
	printf("%-18s %18s", "upstream bytes",
	    human_bytes(
		stats_u64(now, "process", "upstream_bytes"), a, sizeof a));
	printf(" %22s\n",
	    human_bytes(
		stats_u64(now, "store", "upstream_bytes"), b, sizeof b));
	printf("%-18s %18" PRIu64 "\n", "coalesced",
	    stats_u64(now, "process", "coalesced"));
	printf("%-18s %18" PRIu64 "\n", "digest mismatches",
	    stats_u64(now, "process", "digest_mismatches"));
	printf("\nstore: %" PRIu64 " blobs, %s\n",
	    stats_u64(now, "store", "blobs"),
	    human_bytes(stats_u64(now, "store", "bytes"), a, sizeof a));
}

/* What changed between two snapshots, from the store-lifetime counters. */
static int
stats_diff(json_t *before, json_t *now, int as_json)
{
	static const char *const keys[] = {
	    "hits", "misses", "served_bytes", "bytes_saved", "upstream_bytes"};
	uint64_t d[nitems(keys)], b, n;
	char r[32], x[32];
	size_t i;

	for (i = 0; i < nitems(keys); i++) {
		b = stats_u64(before, "store", keys[i]);
		n = stats_u64(now, "store", keys[i]);
		if (n < b) {
			log_error("stats: '%s' went down (%" PRIu64
				  " -> %" PRIu64
				  "): the snapshot is from another store",
			    keys[i], b, n);
			return -1;
		}
		d[i] = n - b;
	}
	stats_ratio(r, sizeof r, d[0], d[1]);
	if (as_json) {
		printf("{\"seconds\":%" PRIu64 ",\"hits\":%" PRIu64
		       ",\"misses\":%" PRIu64
		       ",\"hit_ratio\":%.4f,\"served_bytes\":%" PRIu64
		       ",\"bytes_saved\":%" PRIu64
		       ",\"upstream_bytes\":%" PRIu64 "}\n",
		    stats_u64(now, "time", NULL) -
			stats_u64(before, "time", NULL),
		    d[0], d[1],
		    d[0] + d[1] ? (double)d[0] / (double)(d[0] + d[1]) : 0.0,
		    d[2], d[3], d[4]);
		return 0;
	}
	printf("since the snapshot (%" PRIu64 " s ago):\n",
	    stats_u64(now, "time", NULL) - stats_u64(before, "time", NULL));
	printf("  %-16s %" PRIu64 "\n", "hits", d[0]);
	printf("  %-16s %" PRIu64 "\n", "misses", d[1]);
	printf("  %-16s %s\n", "hit ratio", r);
	printf("  %-16s %s\n", "bytes served", human_bytes(d[2], x, sizeof x));
	printf("  %-16s %s\n", "bytes saved", human_bytes(d[3], x, sizeof x));
	printf(
	    "  %-16s %s\n", "upstream bytes", human_bytes(d[4], x, sizeof x));
	return 0;
}

int
stats_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"server", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"diff", required_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	const char *server = client_default_server();
	const char *diff = NULL;
	struct client_reply rep;
	json_t *now = NULL, *before = NULL;
	json_error_t jerr;
	char *url = NULL;
	int as_json = 0, c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:jd:", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			server = optarg;
			break;
		case 'j':
			as_json = 1;
			break;
		case 'd':
			diff = optarg;
			break;
		default:
			return 2;
		}
	}
	if (diff != NULL && (before = json_load_file(diff, 0, &jerr)) == NULL) {
		log_error(
		    "stats: cannot read snapshot '%s': %s", diff, jerr.text);
		return 1;
	}
	xasprintf(&url, "%s/_ccprewarm/v1/stats", server);
	if (client_request("GET", url, NULL, &rep) == -1) {
		log_error(
		    "stats: cannot reach '%s': %s (is `ccprewarm serve` running? --server URL)",
		    server, rep.error);
		goto out;
	}
	if (rep.status != 200 ||
	    (now = json_loads(rep.body, 0, &jerr)) == NULL) {
		log_error("stats: '%s' answered %ld: %.200s", url, rep.status,
		    rep.body);
		goto out;
	}
	if (before != NULL)
		rc = stats_diff(before, now, as_json) == 0 ? 0 : 1;
	else {
		if (as_json)
			fputs(rep.body, stdout);
		else
			stats_print(now, server);
		rc = 0;
	}
out:
	free(rep.body);
	free(url);
	json_decref(now);
	json_decref(before);
	return rc;
}
