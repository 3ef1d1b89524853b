# ctest core.no_global_constructors: no object file of the allocator core carries a constructor
# to run at load time (.init_array or .ctors: a global object with a dynamic initialiser, or a
# constructor function). The core must work before any constructor has run, when malloc is
# called from another library's constructor; its state is constinit, zero-initialised.
#   cmake -DREADELF=<readelf> -DOBJECTS=<a|b|...> -P no_global_constructors.cmake
if(NOT READELF OR NOT OBJECTS)
  message(FATAL_ERROR "usage: cmake -DREADELF=... -DOBJECTS=... -P no_global_constructors.cmake")
endif()
string(REPLACE "|" ";" OBJECTS "${OBJECTS}")
set(found "")
list(LENGTH OBJECTS count)
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND ${READELF} -SW ${object} OUTPUT_VARIABLE sections RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${READELF} failed on ${object}")
  endif()
  if(sections MATCHES "\\.(init_array|ctors)")
    get_filename_component(name ${object} NAME)
    list(APPEND found ${name})
  endif()
endforeach()
if(found)
  message(FATAL_ERROR "global constructors in the core: ${found} (make the state constinit)")
endif()
message(STATUS "${count} core objects, none with a global constructor")
