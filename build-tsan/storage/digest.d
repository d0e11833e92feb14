build-tsan/storage/digest.o: storage/digest.c storage/../common/common.h \
 storage/storage.h
storage/../common/common.h:
storage/storage.h:
