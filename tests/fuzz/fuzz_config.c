/*
 * tests/fuzz/fuzz_config.c: libFuzzer target for configuration loading,
 * config_load_string() then config_finish() (cmd/config.c): any JSON an
 * operator might write.  Every problem must be counted (a failed load
 * says so), a finished configuration must have a listen address, a data
 * directory and at least one upstream.  log lines go to /dev/null; the
 * sanitizers still report on fd 2.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cmd/cmd.h"

#define FUZZ_MAX_LEN (64 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FILE *null = fopen("/dev/null", "w");

	(void)argc;
	(void)argv;
	if (null != NULL)
		stderr = null;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	int rc;

	if (size > FUZZ_MAX_LEN)
		return 0;
	config_init(&cfg);
	rc = config_load_string(&cfg, (const char *)data, size);
	if ((rc == -1) != (cfg.errors > 0))
		abort();
	if (config_finish(&cfg) == 0) {
		if (cfg.opts.listen_host == NULL || cfg.opts.data_dir == NULL ||
		    cfg.opts.nupstreams == 0 ||
		    cfg.opts.nupstreams > SERVER_MAX_UPSTREAMS)
			abort();
	}
	config_release(&cfg);
	return 0;
}
