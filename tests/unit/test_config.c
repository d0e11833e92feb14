/*
 * tests/unit/test_config.c: cmd/config.c, the configuration loader (linked
 * with cmd/config.o: the Makefile's test_config rule).  Golden file: every
 * line of tests/data/config.in (a JSON configuration) goes through
 * config_load_string() and config_finish(), the fuzzer's entry points, and
 * the result must equal the same line of config.out: what the server would
 * run with, or the number of problems and each one-line message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../cmd/cmd.h"
#include "../../common/common.h"
#include "unit.h"

/* What config.out has for a configuration. */
static void
test_config_eval(const char *in, char *out, size_t len)
{
	struct config cfg;
	char msgs[2048];
	size_t i, n;
	FILE *tmp;
	int saved, rc;

	/* the problems go to stderr: catch them for the golden line */
	fflush(stderr);
	saved = dup(2);
	if ((tmp = tmpfile()) == NULL || saved == -1) {
		snprintf(out, len, "cannot capture stderr");
		return;
	}
	dup2(fileno(tmp), 2);
	config_init(&cfg);
	rc = config_load_string(&cfg, in, strlen(in));
	if (rc == 0)
		rc = config_finish(&cfg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(msgs, 1, sizeof msgs - 1, tmp);
	fclose(tmp);
	msgs[n] = '\0';
	for (i = 0; i < n; i++)
		if (msgs[i] == '\n')
			msgs[i] = i + 1 < n ? '|' : '\0';
	if (rc == -1) {
		snprintf(out, len, "errors=%d: %s", cfg.errors, msgs);
		config_release(&cfg);
		return;
	}
	n = (size_t)snprintf(out, len,
	    "ok listen=%s:%u freshness=%" PRId64 " max_bytes=%" PRIu64,
	    cfg.opts.listen_host, cfg.opts.listen_port,
	    cfg.opts.tag_freshness_s, cfg.opts.max_bytes);
	for (i = 0; i < cfg.opts.nupstreams && n < len; i++)
		n += (size_t)snprintf(out + n, len - n, " %s=%s%s",
		    cfg.opts.upstreams[i].name, cfg.opts.upstreams[i].url,
		    cfg.opts.upstreams[i].username != NULL ? " (auth)" : "");
	config_release(&cfg);
}

static void
test_config_golden(void)
{
	unit_golden("config", test_config_eval);
}

static const struct unit_test tests[] = {
    {"golden", test_config_golden},
};

UNIT_MAIN("config", tests)
