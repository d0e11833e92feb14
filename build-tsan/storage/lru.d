build-tsan/storage/lru.o: storage/lru.c storage/../common/common.h \
 storage/storage.h
storage/../common/common.h:
storage/storage.h:
