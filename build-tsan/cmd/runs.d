build-tsan/cmd/runs.o: cmd/runs.c cmd/../common/common.h cmd/cmd.h \
 cmd/../prewarm/prewarm.h cmd/../prewarm/../registry/registry.h \
 cmd/../prewarm/../registry/../storage/storage.h
cmd/../common/common.h:
cmd/cmd.h:
cmd/../prewarm/prewarm.h:
cmd/../prewarm/../registry/registry.h:
cmd/../prewarm/../registry/../storage/storage.h:
