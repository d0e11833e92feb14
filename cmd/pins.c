/*
 * cmd/pins.c: `ccprewarm docker-pins sync`: keeps pinned images in the
 * node's dockerd safe from `docker system prune`.
 */
#include <stdio.h>

#include "../common/common.h"
#include "cmd.h"

int
pins_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_error("docker-pins: not built yet");
	return 2;
}
