/*
 * tests/unit/test_stream.c: registry/stream.c's window, what a reply that
 * streams a growing file sends next.  The guarantee under test: the reply's
 * last byte never goes out before the digest verified.
 */
#include <stdint.h>

#include "../../registry/registry.h"
#include "unit.h"

#define MAX (16u * 1024 * 1024)

/* Bytes arrive: everything landed goes out, except the reply's last. */
static void
test_whole_holds_last(void)
{
	uint64_t n;

	CHECK(stream_window(0, 100, 0, 0, MAX, &n) == STREAM_WAIT);
	CHECK(stream_window(0, 100, 40, 0, MAX, &n) == STREAM_SEND && n == 40);
	CHECK(stream_window(40, 100, 40, 0, MAX, &n) == STREAM_WAIT);
	/* all 100 landed, not verified: 99 */
	CHECK(
	    stream_window(40, 100, 100, 0, MAX, &n) == STREAM_SEND && n == 59);
	CHECK(stream_window(99, 100, 100, 0, MAX, &n) == STREAM_WAIT);
	/* verified: the last byte, then the end */
	CHECK(stream_window(99, 100, 100, 1, MAX, &n) == STREAM_SEND && n == 1);
	CHECK(stream_window(100, 100, 100, 1, MAX, &n) == STREAM_END);
}

/* A range ending before the blob does: its own last byte waits too. */
static void
test_range_holds_last(void)
{
	uint64_t n;

	CHECK(stream_window(10, 20, 15, 0, MAX, &n) == STREAM_SEND && n == 5);
	CHECK(stream_window(15, 20, 50, 0, MAX, &n) == STREAM_SEND && n == 4);
	CHECK(stream_window(19, 20, 50, 0, MAX, &n) == STREAM_WAIT);
	CHECK(stream_window(19, 20, 50, 1, MAX, &n) == STREAM_SEND && n == 1);
	CHECK(stream_window(20, 20, 50, 1, MAX, &n) == STREAM_END);
	/* a range past what landed waits */
	CHECK(stream_window(60, 80, 50, 0, MAX, &n) == STREAM_WAIT);
}

/* Length unknown (chunked upstream): the missing last chunk holds it. */
static void
test_unknown_length(void)
{
	uint64_t n;

	CHECK(stream_window(0, UINT64_MAX, 30, 0, MAX, &n) == STREAM_SEND &&
	    n == 30);
	CHECK(stream_window(30, UINT64_MAX, 30, 0, MAX, &n) == STREAM_WAIT);
	CHECK(stream_window(30, UINT64_MAX, 30, 1, MAX, &n) == STREAM_END);
	CHECK(stream_window(20, UINT64_MAX, 30, 1, MAX, &n) == STREAM_SEND &&
	    n == 10);
}

/* Never more than max per step; an empty blob ends once verified. */
static void
test_max_and_empty(void)
{
	uint64_t n;

	CHECK(
	    stream_window(0, 1000, 1000, 1, 64, &n) == STREAM_SEND && n == 64);
	CHECK(stream_window(960, 1000, 1000, 1, 64, &n) == STREAM_SEND &&
	    n == 40);
	CHECK(stream_window(0, 0, 0, 0, MAX, &n) == STREAM_WAIT);
	CHECK(stream_window(0, 0, 0, 1, MAX, &n) == STREAM_END);
}

static const struct unit_test tests[] = {
    {"whole_holds_last", test_whole_holds_last},
    {"range_holds_last", test_range_holds_last},
    {"unknown_length", test_unknown_length},
    {"max_and_empty", test_max_and_empty},
};

UNIT_MAIN("stream", tests)
