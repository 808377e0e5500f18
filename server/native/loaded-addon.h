// node-llama-cpp's addon as loaded in this process, found from one of its objects.
#pragma once

#include <dlfcn.h>

// The handle of the loaded library whose code a node-llama-cpp binding object belongs to (found
// from its vtable pointer), or null with `reason` set. dlsym on that handle looks in the addon
// and then in what it links, so it finds the very llama.cpp and ggml node-llama-cpp uses, whichever
// build that is (CPU, CUDA, Vulkan: each has its own sonames).
inline void* loadedAddonOf(const void* binding, const char*& reason) {
  Dl_info where{};
  if (!dladdr(*static_cast<void* const*>(binding), &where) || !where.dli_fname) {
    reason = "the context binding's code is not in a loaded library";
    return nullptr;
  }
  void* addon = dlopen(where.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  if (!addon) reason = "node-llama-cpp's addon is not loaded";
  return addon;
}
