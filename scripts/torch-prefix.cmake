# Included before find_package(Torch). Two things TorchConfig.cmake does not do on its own:
#
# 1. Use the Caffe2 config and the libraries of the LibTorch that Torch_DIR names. TorchConfig finds Caffe2 and
#    its libraries with the system paths searched first, so on a machine that also has a system LibTorch
#    (Debian's libtorch-dev) a pip wheel's TorchConfig would silently pull in the system's targets and libtorch.so.
#
# 2. Configure against pip's CUDA torch wheel on a machine without the CUDA toolkit (the usual GPU box: the driver
#    plus `pip install torch`). The wheel's Caffe2Config insists on finding CUDA (FindCUDA needs nvcc) and stops
#    with "Your installed Caffe2 version uses CUDA but I cannot find the CUDA libraries". Its torch targets need
#    only one CUDA target, torch::cudart; the runtime comes as a wheel beside torch (nvidia/cu13 for CUDA 13,
#    nvidia/cuda_runtime for CUDA 12). Defining torch::cudart from it makes Caffe2's cuda.cmake return early
#    (its include guard). llamapro's sources include no CUDA header unless one is found (see runtime_info.cc).

if(NOT Torch_DIR OR NOT EXISTS "${Torch_DIR}/TorchConfig.cmake")
  return()
endif()

get_filename_component(LLAMAPRO_TORCH_PREFIX "${Torch_DIR}/../../.." ABSOLUTE)
if(EXISTS "${Torch_DIR}/../Caffe2/Caffe2Config.cmake")
  get_filename_component(Caffe2_DIR "${Torch_DIR}/../Caffe2" ABSOLUTE)
  set(Caffe2_DIR "${Caffe2_DIR}" CACHE PATH "Caffe2 config of the LibTorch in Torch_DIR" FORCE)
endif()
if(EXISTS "${LLAMAPRO_TORCH_PREFIX}/lib")
  list(PREPEND CMAKE_PREFIX_PATH "${LLAMAPRO_TORCH_PREFIX}")  # its lib/ before the system's
endif()

set(LLAMAPRO_CAFFE2_USES_CUDA OFF)
if(Caffe2_DIR AND EXISTS "${Caffe2_DIR}/Caffe2Config.cmake")
  file(STRINGS "${Caffe2_DIR}/Caffe2Config.cmake" _llamapro_cuda_line REGEX "set\\(CAFFE2_USE_CUDA (1|ON)\\)")  # torch 2.15 writes 1, 2.11 writes ON
  if(_llamapro_cuda_line)
    set(LLAMAPRO_CAFFE2_USES_CUDA ON)
  endif()
endif()
if(NOT LLAMAPRO_CAFFE2_USES_CUDA OR TARGET torch::cudart)
  return()
endif()

find_program(LLAMAPRO_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH ENV CUDAToolkit_ROOT PATH_SUFFIXES bin
             PATHS /usr/local/cuda/bin)
if(LLAMAPRO_NVCC)
  message(STATUS "llamapro: CUDA LibTorch; CUDA toolkit at ${LLAMAPRO_NVCC}")
  return()  # Caffe2's own cuda.cmake sets everything up from the toolkit
endif()

# No toolkit: the CUDA runtime wheel next to torch (site-packages/torch/share/cmake/Torch -> site-packages).
get_filename_component(_llamapro_site "${LLAMAPRO_TORCH_PREFIX}/.." ABSOLUTE)
set(_llamapro_runtime_roots)
if(DEFINED ENV{LLAMAPRO_CUDA_RUNTIME})
  list(APPEND _llamapro_runtime_roots "$ENV{LLAMAPRO_CUDA_RUNTIME}")
endif()
file(GLOB _llamapro_cu_dirs LIST_DIRECTORIES true "${_llamapro_site}/nvidia/cu[0-9]*")
list(APPEND _llamapro_runtime_roots ${_llamapro_cu_dirs} "${_llamapro_site}/nvidia/cuda_runtime")
set(LLAMAPRO_CUDART "")
foreach(_root IN LISTS _llamapro_runtime_roots)
  file(GLOB _found "${_root}/lib/libcudart.so*")
  if(_found)
    list(SORT _found)
    list(GET _found 0 LLAMAPRO_CUDART)
    set(LLAMAPRO_CUDA_RUNTIME_ROOT "${_root}")
    break()
  endif()
endforeach()
if(NOT LLAMAPRO_CUDART)
  message(FATAL_ERROR
    "llamapro: the LibTorch in ${Torch_DIR} is a CUDA build, but there is no CUDA toolkit (no nvcc in CUDA_HOME, "
    "CUDA_PATH, PATH or /usr/local/cuda) and no CUDA runtime wheel beside it (looked in ${_llamapro_site}/nvidia/cu*/lib "
    "and ${_llamapro_site}/nvidia/cuda_runtime/lib). Install the runtime the torch wheel depends on "
    "(pip install nvidia-cuda-runtime, or nvidia-cuda-runtime-cu12 for CUDA 12), set LLAMAPRO_CUDA_RUNTIME to a folder "
    "holding lib/libcudart.so.*, or set CUDA_HOME to a CUDA toolkit.")
endif()
add_library(torch::cudart INTERFACE IMPORTED)
set_property(TARGET torch::cudart PROPERTY INTERFACE_LINK_LIBRARIES "${LLAMAPRO_CUDART}")
# The runtime headers are usable only with crt/ (a separate wheel, nvidia-cuda-crt, for CUDA 13).
if(EXISTS "${LLAMAPRO_CUDA_RUNTIME_ROOT}/include/cuda_runtime_api.h" AND EXISTS "${LLAMAPRO_CUDA_RUNTIME_ROOT}/include/crt/host_defines.h")
  set_property(TARGET torch::cudart PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${LLAMAPRO_CUDA_RUNTIME_ROOT}/include")
  message(STATUS "llamapro: CUDA LibTorch without a toolkit; CUDA runtime and headers from ${LLAMAPRO_CUDA_RUNTIME_ROOT}")
else()
  message(STATUS "llamapro: CUDA LibTorch without a toolkit; CUDA runtime from ${LLAMAPRO_CUDART} (no CUDA headers: built without them)")
endif()
