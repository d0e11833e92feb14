/*
 * cmd/ccprewarm.c: main, the subcommand table, option parsing, the one
 * event_base and its signals.  SIGTERM/SIGINT drain and return from main
 * with everything freed.
 */
#include <sys/resource.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../common/common.h"
#include "cmd.h"

static int cmd_serve(int, char **);
static int cmd_version(int, char **);
static int cmd_help(int, char **);

static const struct cmd {
	const char *name;
	const char *usage;
	int (*fn)(int, char **);
} cmds[] = {
    {"serve",
	"serve [--config FILE] [--listen ADDR:PORT] [--data DIR]\n"
	"        [--upstream URL | --upstream HOST=URL]... "
	"[--tag-freshness SECONDS]\n"
	"        [--log-level LEVEL] [--access-log FILE|-] [--loops N] [-n|--check]\n"
	"        [--access-log-buffer N[K|M]]\n"
	"        [--max-bytes N[KMGT]] [--min-free-bytes N[KMGT]] "
	"[--min-free-percent P]",
	cmd_serve},
    {"gc",
	"gc [--dry-run] [--json] [--server URL | --data DIR [--config FILE]\n"
	"        [--max-bytes N] [--min-free-bytes N] [--min-free-percent P]]",
	gc_main},
    {"verify", "verify [--repair] [--json] [--server URL | --data DIR]",
	verify_main},
    {"docker-pins",
	"docker-pins sync [--docker SOCKET] [--server URL] [--json]",
	pins_main},
    {"stats", "stats [--server URL] [--json] [--diff BEFORE.json]", stats_main},
    {"enroll",
	"enroll RECIPE... [--versions N | --version V] "
	"[--catalogue[=FILE]]\n        [--all-overlays] "
	"[--allow-floating] [--recipes-dir DIR] [--platform P]... "
	"[--docker[=SOCKET]] [--server URL] "
	"[--json] [--no-wait]",
	enroll_main},
    {"unenroll", "unenroll RECIPE... [--version V] [--server URL] [--json]",
	unenroll_main},
    {"list", "list [--server URL] [--json]", list_main},
    {"status", "status RECIPE [--server URL] [--json]", status_main},
    {"warm", "warm [--server URL] [--json] [--no-wait]", warm_main},
    {"catalogue",
	"catalogue list [RECIPE...] [--catalogue FILE] [--versions N] "
	"[--json]",
	catalogue_main},
    {"run",
	"run begin NAME [--label KEY=VALUE]... [--client ADDR] [--server URL]\n"
	"        | run end NAME [--server URL] [--json]",
	run_main},
    {"runs",
	"runs [--server URL] [--json]\n"
	"        | runs show NAME [--json] [--html FILE]\n"
	"        | runs compare [BASE] NAME [--threshold PCT] [--html FILE] "
	"[--json]\n"
	"        | runs baseline NAME",
	runs_main},
    {"shared-gc", "shared-gc --config FILE [--min-age SECONDS] [--dry-run]",
	sharedgc_main},
    {"version", "version", cmd_version},
    {"help", "help", cmd_help},
};

static void
cmd_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage:\n");
	for (i = 0; i < nitems(cmds); i++)
		fprintf(f, "  ccprewarm %s\n", cmds[i].usage);
}

static int
cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	cmd_usage(stdout);
	return 0;
}

static int
cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("ccprewarm %s\n", version_string());
	return 0;
}

static void
cmd_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("received signal %d", (int)sig);
	server_shutdown(arg);
}

static int
cmd_parse_seconds(
    struct config *cfg, const char *flag, const char *s, int64_t *out)
{
	char *ep;
	long long v;

	errno = 0;
	v = strtoll(s, &ep, 10);
	if (errno != 0 || *ep != '\0' || ep == s || v < 0) {
		log_error("%s: '%s' is not a number of seconds", flag, s);
		cfg->errors++;
		return -1;
	}
	*out = v;
	return 0;
}

/* Each live request may hold a socket, an upstream socket and a temp file. */
static void
cmd_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("cannot raise the open-file limit: %s",
			    strerror(errno));
	}
}

static int
cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"listen", required_argument, NULL, 'l'},
	    {"data", required_argument, NULL, 'd'},
	    {"upstream", required_argument, NULL, 'u'},
	    {"tag-freshness", required_argument, NULL, 't'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"access-log", required_argument, NULL, 'a'},
	    {"access-log-buffer", required_argument, NULL, 'B'},
	    {"check", no_argument, NULL, 'n'},
	    {"max-bytes", required_argument, NULL, 'M'},
	    {"loops", required_argument, NULL, 'O'},
	    {"min-free-bytes", required_argument, NULL, 'F'},
	    {"min-free-percent", required_argument, NULL, 'P'},
	    {NULL, 0, NULL, 0},
	};
	const char *maxb = NULL, *minfree = NULL, *minpct = NULL, *abuf = NULL;
	const char *loops = NULL;
	struct config cfg;
	struct event_base *base = NULL;
	struct event *sigterm = NULL, *sigint = NULL;
	struct server *srv = NULL;
	struct prewarm *pw = NULL;
	struct runs *runs = NULL;
	const char *config_file = NULL, *listen = NULL, *data = NULL;
	const char *loglevel = NULL, *access_log = NULL, *freshness = NULL;
	const char *ups[SERVER_MAX_UPSTREAMS];
	size_t nups = 0, i;
	enum log_level lvl;
	int check = 0, c, rc = 1;

	config_init(&cfg);
	optind = 1;
	while ((c = getopt_long(argc, argv,
		    "c:l:d:u:t:L:a:B:nM:F:P:O:", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_file = optarg;
			break;
		case 'l':
			listen = optarg;
			break;
		case 'd':
			data = optarg;
			break;
		case 'u':
			if (nups == nitems(ups))
				fatal("too many --upstream flags");
			ups[nups++] = optarg;
			break;
		case 't':
			freshness = optarg;
			break;
		case 'L':
			loglevel = optarg;
			break;
		case 'a':
			access_log = optarg;
			break;
		case 'B':
			abuf = optarg;
			break;
		case 'n':
			check = 1;
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
		case 'O':
			loops = optarg;
			break;
		default:
			cmd_usage(stderr);
			goto out;
		}
	}
	if (optind != argc) {
		log_error("serve: unexpected argument '%s'", argv[optind]);
		goto out;
	}
	/* The file first; flags override it. */
	if (config_file != NULL)
		config_load_file(&cfg, config_file);
	if (listen != NULL)
		config_set_listen(&cfg, listen);
	if (data != NULL)
		cfg.opts.data_dir = config_str(&cfg, data);
	for (i = 0; i < nups; i++)
		config_add_upstream(&cfg, ups[i]);
	if (freshness != NULL)
		cmd_parse_seconds(&cfg, "--tag-freshness", freshness,
		    &cfg.opts.tag_freshness_s);
	if (loglevel != NULL) {
		free(cfg.log_level);
		cfg.log_level = xstrdup(loglevel);
	}
	if (access_log != NULL)
		cfg.opts.access_log = config_str(&cfg, access_log);
	if (abuf != NULL) {
		uint64_t v;

		if (config_set_bytes(&cfg, "--access-log-buffer", abuf, &v) ==
		    0) {
			if (v > 16u << 20) {
				log_error(
				    "--access-log-buffer: must be at most 16M");
				cfg.errors++;
			} else
				cfg.opts.access_log_buffer_bytes = (int64_t)v;
		}
	}
	if (maxb != NULL)
		config_set_bytes(
		    &cfg, "--max-bytes", maxb, &cfg.opts.max_bytes);
	if (minfree != NULL)
		config_set_bytes(&cfg, "--min-free-bytes", minfree,
		    &cfg.opts.min_free_bytes);
	if (minpct != NULL &&
	    cmd_parse_seconds(&cfg, "--min-free-percent", minpct,
		&cfg.opts.min_free_percent) == 0 &&
	    cfg.opts.min_free_percent > 99) {
		log_error("--min-free-percent: must be from 0 to 99");
		cfg.errors++;
	}
	if (loops != NULL) {
		char *ep;
		long v = strtol(loops, &ep, 10);

		if (*ep != '\0' || ep == loops || v < 1 || v > 16) {
			log_error("--loops: '%s' is not a number from 1 to 16",
			    loops);
			cfg.errors++;
		} else
			cfg.opts.loops = v;
	}
	if (config_finish(&cfg) == -1) {
		log_error("configuration has %d problem%s; not starting",
		    cfg.errors, cfg.errors == 1 ? "" : "s");
		goto out;
	}
	if (cfg.log_level != NULL && log_level_parse(cfg.log_level, &lvl) == 0)
		log_init(lvl, NULL);
	if (check) {
		printf("configuration ok: listen %s:%u, data '%s', %zu "
		       "upstream%s\n",
		    cfg.opts.listen_host, cfg.opts.listen_port,
		    cfg.opts.data_dir, cfg.opts.nupstreams,
		    cfg.opts.nupstreams == 1 ? "" : "s");
		rc = 0;
		goto out;
	}
	/* A client that goes away mid-sendfile must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	cmd_raise_nofile();
	if ((base = event_base_new()) == NULL)
		fatal("cannot create the event loop");
	if ((srv = server_new(base, &cfg.opts)) == NULL)
		goto out;
	if ((pw = prewarm_new(srv, cfg.platforms, cfg.nplatforms)) == NULL)
		goto out;
	prewarm_set_versions(pw, cfg.recipe_versions);
	if ((runs = runs_new(srv, cfg.opts.runs_keep)) == NULL)
		goto out;
	sigterm = evsignal_new(base, SIGTERM, cmd_signal_cb, srv);
	sigint = evsignal_new(base, SIGINT, cmd_signal_cb, srv);
	if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) ||
	    evsignal_add(sigint, NULL))
		fatal("cannot install signal handlers");
	log_info("listening on %s:%u, data '%s'", cfg.opts.listen_host,
	    server_port(srv), cfg.opts.data_dir);
	for (i = 0; i < cfg.opts.nupstreams; i++)
		log_info("upstream '%s' at %s", cfg.opts.upstreams[i].name,
		    cfg.opts.upstreams[i].url);
	event_base_dispatch(base);
	log_info("stopped");
	rc = 0;
out:
	prewarm_free(pw); /* before the server: its fetches go first */
	runs_free(runs);
	server_free(srv);
	if (sigterm != NULL)
		event_free(sigterm);
	if (sigint != NULL)
		event_free(sigint);
	if (base != NULL)
		event_base_free(base);
	config_release(&cfg);
	return rc;
}

int
main(int argc, char **argv)
{
	size_t i;

	log_init(LOG_LEVEL_INFO, "ccprewarm");
	if (argc < 2) {
		cmd_usage(stderr);
		return 2;
	}
	for (i = 0; i < nitems(cmds); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(argc - 1, argv + 1);
	log_error("unknown command '%s'", argv[1]);
	cmd_usage(stderr);
	return 2;
}
