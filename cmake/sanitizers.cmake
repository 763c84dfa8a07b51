# DATAPUMP_SANITIZE=address,undefined | thread : applied to every target in the tree.
if(DATAPUMP_SANITIZE)
  add_compile_options(-fsanitize=${DATAPUMP_SANITIZE} -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=${DATAPUMP_SANITIZE})
  if(DATAPUMP_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
endif()
