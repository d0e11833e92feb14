build-tsan/common/clock.o: common/clock.c common/common.h
common/common.h:
