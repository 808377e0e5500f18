// The engine's native addon: a persistent ggml threadpool per context (threadpool.cc) and one
// decode step in one worker hop (step.cc), both on the llama.cpp that node-llama-cpp loaded.
#include <napi.h>

void InitThreadpool(Napi::Env env, Napi::Object exports);
void InitStep(Napi::Env env, Napi::Object exports);

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitThreadpool(env, exports);
  InitStep(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(inferno_engine, Init)
