build-tsan/common/log.o: common/log.c common/common.h
common/common.h:
