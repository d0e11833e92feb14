build-tsan/storage/verify.o: storage/verify.c storage/../common/common.h \
 storage/storage.h
storage/../common/common.h:
storage/storage.h:
