# DATAPUMP_SANITIZE=address,undefined | thread : applied to every target in the tree.
if(DATAPUMP_SANITIZE)
  # -g1: line tables, all a sanitizer's report needs (file:line in every frame), at a fraction of
  # full debug information's compile and link time (CI's time budget, docs/testing.md).
  add_compile_options(-fsanitize=${DATAPUMP_SANITIZE} -fno-omit-frame-pointer -g1)
  add_link_options(-fsanitize=${DATAPUMP_SANITIZE})
  if(DATAPUMP_SANITIZE MATCHES "undefined")
    # No vptr check: to read an object's type, UBSan first probes the memory with a pipe(), and in
    # the descriptor-exhaustion tests (EMFILE on purpose) that probe fails and UBSan reports an
    # "invalid vptr" that is not there, from the first virtual call it had not cached (std::thread
    # starting, an io::completion). The bad vptrs that matter come from freed objects, which
    # ASan, in the same build, still catches.
    add_compile_options(-fno-sanitize-recover=undefined -fno-sanitize=vptr)
    add_link_options(-fno-sanitize=vptr)
  endif()
endif()
