// A persistent ggml threadpool for a node-llama-cpp context.
//
// node-llama-cpp 3.21.1 never attaches a threadpool to its llama.cpp contexts, so with more than
// one thread ggml creates and joins a new one on every decode, from whichever libuv worker runs
// that decode. On a 2-core machine that made 2 threads 2-3x slower than 1 (bench/threads.ts); a
// pool attached once (what llama-server does) makes them faster than 1 instead. This addon
// attaches one to the llama_context behind a node-llama-cpp context binding (`LlamaContext._ctx`)
// and frees it once that context is gone.
//
// It reads the llama_context pointer out of node-llama-cpp's AddonContext, laid out by
// node-llama-cpp's own header, and checks the fields around it against what JavaScript knows of
// the context before using it. node-llama-cpp is pinned exactly; scripts/build-native.mjs builds
// this against that version's headers, and server/test/threadpool.test.ts fails if it stops
// working.
#include <dlfcn.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "AddonContext.h"
#include "loaded-addon.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace {

// llama.cpp and ggml are already loaded by node-llama-cpp's addon: their functions are looked up
// through its handle rather than linked, so this addon is bound to that very copy of them.
struct Api {
  void (*attach)(llama_context*, ggml_threadpool_t, ggml_threadpool_t) = nullptr;
  void (*detach)(llama_context*) = nullptr;
  uint32_t (*n_ctx)(const llama_context*) = nullptr;
  ggml_backend_dev_t (*dev_by_type)(enum ggml_backend_dev_type) = nullptr;
  ggml_backend_reg_t (*dev_backend_reg)(ggml_backend_dev_t) = nullptr;
  void* (*reg_proc_address)(ggml_backend_reg_t, const char*) = nullptr;
  struct ggml_threadpool_params (*params_default)(int) = nullptr;
  ggml_threadpool_t (*pool_new)(struct ggml_threadpool_params*) = nullptr;
  void (*pool_free)(ggml_threadpool_t) = nullptr;
};

template <typename F>
bool find(F& slot, const char* name, void* library) {
  slot = reinterpret_cast<F>(dlsym(library, name));
  return slot != nullptr;
}

// From the addon that holds the context binding's class and what it links (`loadedAddonOf`).
const char* resolve(Api& api, const void* binding) {
  const char* reason = nullptr;
  void* addon = loadedAddonOf(binding, reason);
  if (!addon) return reason;
  if (!find(api.attach, "llama_attach_threadpool", addon) || !find(api.detach, "llama_detach_threadpool", addon) || !find(api.n_ctx, "llama_n_ctx", addon))
    return "libllama lacks llama_attach_threadpool";
  if (!find(api.dev_by_type, "ggml_backend_dev_by_type", addon) || !find(api.dev_backend_reg, "ggml_backend_dev_backend_reg", addon) ||
      !find(api.reg_proc_address, "ggml_backend_reg_get_proc_address", addon))
    return "libggml lacks the backend registry";
  if (!find(api.params_default, "ggml_threadpool_params_default", addon)) return "libggml-base lacks ggml_threadpool_params_default";
  ggml_backend_dev_t cpu = api.dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (!cpu) return "no CPU backend is loaded";
  ggml_backend_reg_t reg = api.dev_backend_reg(cpu);
  api.pool_new = reinterpret_cast<decltype(api.pool_new)>(api.reg_proc_address(reg, "ggml_threadpool_new"));
  api.pool_free = reinterpret_cast<decltype(api.pool_free)>(api.reg_proc_address(reg, "ggml_threadpool_free"));
  if (!api.pool_new || !api.pool_free) return "the CPU backend has no threadpool functions";
  return nullptr;
}

struct Pool {
  ggml_threadpool_t pool;
  llama_context* ctx;
};
std::mutex pools_mutex;
std::unordered_map<uint32_t, Pool> pools;
uint32_t next_id = 1;

Api& api() {
  static Api api;
  return api;
}
// Resolved once, from the first context binding attached (one node-llama-cpp addon per process).
const char* unresolved(const void* binding) {
  static const char* reason = resolve(api(), binding);
  return reason;
}

// attach(contextBinding, threads, sequences, contextCells, poll) -> pool id. Throws if the binding is not what
// this addon was built against. `poll` is ggml's: how long (0-100) an idle thread spins for the
// next graph before it sleeps.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsObject() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber()) {
    Napi::TypeError::New(env, "attach(contextBinding, threads, sequences, contextCells, poll)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int threads = info[1].As<Napi::Number>().Int32Value();
  const uint32_t sequences = info[2].As<Napi::Number>().Uint32Value();
  const uint32_t cells = info[3].As<Napi::Number>().Uint32Value();
  void* wrapped = nullptr;
  if (napi_unwrap(env, info[0], &wrapped) != napi_ok || !wrapped) {
    Napi::Error::New(env, "not a node-llama-cpp context binding").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (const char* reason = unresolved(wrapped)) {
    Napi::Error::New(env, reason).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Api& api = ::api();
  auto* context = static_cast<AddonContext*>(wrapped);
  // The layout is node-llama-cpp's: check the fields around the pointer before following it.
  if (!context->contextLoaded || context->disposed || !context->ctx || context->context_params.n_threads != threads ||
      context->context_params.n_seq_max != sequences || context->context_params.n_ctx < cells || api.n_ctx(context->ctx) != context->context_params.n_ctx) {
    Napi::Error::New(env, "node-llama-cpp's context binding is not laid out as this addon was built for").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct ggml_threadpool_params params = api.params_default(threads);
  params.poll = info[4].As<Napi::Number>().Uint32Value();
  ggml_threadpool_t pool = api.pool_new(&params);
  if (!pool) {
    Napi::Error::New(env, "ggml could not start a threadpool").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  api.attach(context->ctx, pool, nullptr);
  std::lock_guard<std::mutex> lock(pools_mutex);
  const uint32_t id = next_id++;
  pools[id] = {pool, context->ctx};
  return Napi::Number::New(env, id);
}

// use(id, on): attaches the pool to its context again (on) or detaches it, so that a decode on one
// thread runs without waking the pool's idle threads. Only between decodes, before the context is
// disposed. (No pool exists until attach has resolved the functions.)
Napi::Value Use(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) return Napi::Boolean::New(env, false);
  std::lock_guard<std::mutex> lock(pools_mutex);
  auto found = pools.find(info[0].As<Napi::Number>().Uint32Value());
  if (found == pools.end()) return Napi::Boolean::New(env, false);
  if (info[1].As<Napi::Boolean>().Value()) api().attach(found->second.ctx, found->second.pool, nullptr);
  else api().detach(found->second.ctx);
  return Napi::Boolean::New(env, true);
}

// free(id): stops a pool's threads. Only once its context is disposed (the context keeps using it).
// The context is not touched: it is gone by then.
Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Boolean::New(env, false);
  ggml_threadpool_t pool = nullptr;
  {
    std::lock_guard<std::mutex> lock(pools_mutex);
    auto found = pools.find(info[0].As<Napi::Number>().Uint32Value());
    if (found == pools.end()) return Napi::Boolean::New(env, false);
    pool = found->second.pool;
    pools.erase(found);
  }
  api().pool_free(pool);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitThreadpool(Napi::Env env, Napi::Object exports) {
  exports.Set("attach", Napi::Function::New(env, Attach));
  exports.Set("use", Napi::Function::New(env, Use));
  exports.Set("free", Napi::Function::New(env, Free));
}
