/**
 * The libraries a bundle leaves to the system it runs on. Everything else the addon loads is copied in.
 *
 * - glibc (libc, libm, libpthread, libdl, librt, the loader...): tied to the running loader; a copied libc from
 *   another system crashes or refuses to load. The manifest records the newest GLIBC_ version the bundle needs.
 * - libstdc++ and libgcc_s: part of every Linux desktop and already loaded by node itself; the loader reuses a
 *   loaded soname, so a bundled copy would often not be the one used. The manifest records the newest GLIBCXX_
 *   version the bundle needs, and a load on an older system says so (lib/native/load.ts).
 * - the GPU driver's libraries (libcuda, libnvidia-ml): they must match the kernel module of the machine.
 */
const DRIVER = [/^libcuda\.so(\.\d+)*$/, /^libnvidia-[\w-]+\.so(\.\d+)*$/]
const SYSTEM = [
  /^ld-linux[\w.-]*\.so\.\d+$/,
  /^lib(c|m|mvec|pthread|dl|rt|util|resolv|anl|nsl|BrokenLocale|crypt)\.so\.\d+$/,
  /^libstdc\+\+\.so\.\d+$/,
  /^libgcc_s\.so\.\d+$/,
  ...DRIVER,
]

export function isSystemLibrary(name: string): boolean {
  const base = name.split('/').pop()!
  return SYSTEM.some((pattern) => pattern.test(base))
}

/**
 * The GPU driver's libraries. A CUDA bundle is usually made where there is no GPU (a CI machine, a build box):
 * there the driver is absent, and a library asking for it (pip's libcaffe2_nvrtc.so links libcuda.so.1) resolves
 * to nothing. That is not a gap in the bundle, which must never carry the driver: it is listed as a system library
 * not found where the bundle was made. libtorch_cuda itself loads without it (the CUDA runtime opens libcuda with
 * dlopen when a device is first used).
 */
export function isDriverLibrary(name: string): boolean {
  const base = name.split('/').pop()!
  return DRIVER.some((pattern) => pattern.test(base))
}

/**
 * Libraries loaded with dlopen (so absent from ldd's list) that a bundled library needs at run time, found in the
 * same folder as the library that loads them. Only CUDA LibTorch has them; listed from LibTorch's and NVIDIA's
 * sources, not run here (no GPU):
 * - libtorch_cuda loads NVRTC lazily through libcaffe2_nvrtc.so (ATen's LazyNVRTC);
 * - NVRTC loads its builtins library (libnvrtc-builtins.so.<major>.<minor>);
 * - cuDNN 9 loads its engine and graph sublibraries (libcudnn_*.so.9).
 */
export const DLOPENED: { loader: RegExp; companions: RegExp }[] = [
  { loader: /^libtorch_cuda\.so$/, companions: /^libcaffe2_nvrtc\.so$/ },
  { loader: /^libnvrtc\.so\.\d+$/, companions: /^libnvrtc-builtins(\.alt)?\.so\.[\d.]+$/ },
  { loader: /^libcudnn\.so\.\d+$/, companions: /^libcudnn_\w+\.so\.\d+$/ },
]
