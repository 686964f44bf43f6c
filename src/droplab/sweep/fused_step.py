"""C++ kernels for populations of one-hidden-layer ReLU regressors on the CPU: the training step,
its dropout uniforms and the MC-dropout passes.

The UCI regression benchmark (Hernández-Lobato & Adams 2015, arXiv:1502.05336; the MC-dropout
protocol of Gal & Ghahramani 2016, arXiv:1506.02142) trains hundreds of nets
``Dropout(p) -> Linear(d, H) -> ReLU -> Dropout(p) -> Linear(H, C)`` at once, with d of 6-13,
H of 50, batches of 128. Done as batched torch ops, a step is a chain of about fifteen passes
over ``(K, B, H)`` tensors of several MiB each, and the first layer's products (inner
dimension d) are a poor fit for the batched GEMM. :func:`mlp1_step` does the whole step of one
member -- masks from the uniforms, forward, squared-error loss, hand-written backward -- in one
call of a small C++ kernel, with the member's activations in its core's cache; members are split
across threads. The products are register-blocked (tiles of 4 rows x 24 columns of the output held
in vector registers, the inner dimension summed in ascending order), and a member's batch is
walked in blocks of 16 rows so that its activations, gradients and rows of uniforms stay in L1
(the sums over the batch carry their accumulators from block to block: the same chains, the
same bits as one pass). Members of one split and seed read one shared batch (``data_index``)
and one shared row of uniforms (``seed_index``).

Two more functions serve the same populations. :func:`counter_uniforms` draws a step's
uniforms, one row per seed, from the counter stream of :mod:`droplab.functional.counter`, bit for
bit (0.05 ms for 20 x 128 x 58 against 0.47 ms for 20 mt19937 generators); :func:`mc_passes`
runs MC-dropout passes with the counter masks of :meth:`MLPNet.mc_passes
<droplab.sweep.population.MLPNet.mc_passes>`, hashing each seed's draws once for the members
that share them, with no per-pass tensors (kin8nm's 240 grid members: 1.2 s per 100 passes over
1,475 validation rows against 3.8 s for the batched torch ops).

:func:`mlp1_step` computes what :meth:`droplab.sweep.population.MLPNet.train_step` computes for such a net
(masks ``(u >= p) * s`` exactly as ``MLPNet.masks``, ReLU, ``mean((out - y)**2)``, its gradient
``2 (out - y) / (B C)``), the products in another summation order: results agree with the
batched-torch path within float32 rounding, not bitwise (the tests check both).

Determinism: a member's numbers are computed by the same instructions in the same order
whatever K, its position in the population or the number of threads, so a seed gives
bitwise-identical results on one machine.

The kernels are compiled on first use with ``torch.utils.cpp_extension.load_inline`` (about a
minute; torch caches the build per machine). :func:`backend` says which path runs: ``"cpp"``,
or ``"torch (<why>)"`` when the build failed or ``DROPLAB_FUSED_STEP=0`` turned it off; then
``MLPNet`` keeps its batched-torch step.

Example::

    from droplab.sweep.fused_step import backend, mlp1_step
    losses, grads = mlp1_step(x, u, p_cols, s_cols, (0, 13), W0, b0, W1, b1, y)
    print(backend())
"""

from __future__ import annotations

import os
import threading

import torch

__all__ = ["mlp1_step", "counter_uniforms", "mc_passes", "backend", "available"]

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cstdint>
#include <algorithm>
#include <cstring>
#ifdef __FMA__
#include <immintrin.h>
#endif
#include <vector>

typedef float v8 __attribute__((vector_size(32)));

// unaligned vector loads and stores typed as floats (a memcpy would be a char access that may
// alias anything: the compiler then reloaded the captured sizes and flags in every loop)
typedef float v8u __attribute__((vector_size(32), aligned(4)));
static inline v8 load8(const float* p) { return *(const v8u*)p; }
static inline void store8(float* p, v8 v) { *(v8u*)p = v; }
static inline v8 bcast(float x) { return (v8){x, x, x, x, x, x, x, x}; }

// out[r, j] = init[r, j] + sum_c A(r, c) * B[c, j], c ascending. A(r, c) = a[r * sar + c * sac];
// B is (Cn, .) row-major with row stride ldb, out (R, .) with row stride ldo. init: bias[j]
// (zero when bias is null), or with ACC the values already in out, so a sum over c split in
// blocks (row blocks of the batch) continues each element's chain where the last block left it:
// the same operations in the same order as one pass. Tiles of R rows x V vectors of 8 columns
// (R * V independent accumulators: FMA latency x throughput needs about ten); every element is
// the same chain of operations (init, then c ascending) whatever the tile -- but see product on
// which tiles round the product apart from the sum.
template <int R, int V, bool ACC>
static inline void tile(const float* a, long sar, long sac, const float* b, long ldb, const float* bias,
                        float* out, long ldo, long Cn) {
  v8 acc[R][V];
  if (ACC) {
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v) acc[i][v] = load8(out + i * ldo + 8 * v);
  } else {
    for (int v = 0; v < V; ++v) {
      v8 init = bias ? load8(bias + 8 * v) : bcast(0.f);
      for (int i = 0; i < R; ++i) acc[i][v] = init;
    }
  }
  for (long c = 0; c < Cn; ++c) {
    v8 bv[V];
    for (int v = 0; v < V; ++v) bv[v] = load8(b + c * ldb + 8 * v);
    for (int i = 0; i < R; ++i) {
      v8 av = bcast(a[i * sar + c * sac]);
      for (int v = 0; v < V; ++v) acc[i][v] += av * bv[v];
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) store8(out + i * ldo + 8 * v, acc[i][v]);
}

template <int R, int V, bool ACC>
static inline void rows(const float* a, long sar, long sac, const float* b, long ldb, const float* bias,
                        float* out, long ldo, long Cn, long N) {
  long j = 0;
  for (; j + 8 * V <= N; j += 8 * V) tile<R, V, ACC>(a, sar, sac, b + j, ldb, bias ? bias + j : nullptr, out + j, ldo, Cn);
  for (; j < N; j += 8) tile<R, 1, ACC>(a, sar, sac, b + j, ldb, bias ? bias + j : nullptr, out + j, ldo, Cn);
}

// out (M, N) [+]= A (M, Cn) B (Cn, N) [+ bias] on padded operands: B's rows, bias and out's rows
// hold pad8(N) floats (zero past N in B and bias; out's are not read), so the last N % 8
// columns are one more vector tile, without a tail copy. The columns go to tiles of V vectors
// while 8 V columns remain, then to single vectors: keep that split, the results depend on it
// (GCC's Zen tuning compiles a one-accumulator chain, the 1 x 1 tile, as a product then a sum,
// not an FMA).
template <bool ACC>
static void product(const float* a, long sar, long sac, const float* b, long ldb, const float* bias,
                    float* out, long ldo, long M, long Cn, long N) {
  long r = 0;
  for (; r + 4 <= M; r += 4) rows<4, 3, ACC>(a + r * sar, sar, sac, b, ldb, bias, out + r * ldo, ldo, Cn, N);
  for (; r < M; ++r) rows<1, 6, ACC>(a + r * sar, sar, sac, b, ldb, bias, out + r * ldo, ldo, Cn, N);
}

static inline long pad8(long n) { return (n + 7) / 8 * 8; }

// One output: bias + sum_j h[j] w[j], as 8 partial sums over j = lane (mod 8), added in lane
// order, then the tail, then the bias.
static inline float dot_out(const float* h, const float* w, long H, float bias) {
  v8 acc = bcast(0.f);
  long j = 0;
  for (; j + 8 <= H; j += 8) acc += load8(h + j) * load8(w + j);
  float t = 0.f;
  for (int l = 0; l < 8; ++l) t += acc[l];
  for (; j < H; ++j) t += h[j] * w[j];
  return t + bias;
}

// x (X, B, D) and y (X, B, C), member k's at row xrows[k] (xrows empty: k, X = K);
// u (S, B, U) uniforms or empty, member k's at row rows[k] (rows empty: k);
// p, s (K, 1, U) thresholds and scales; off0/off1
// the columns of u for the input and hidden masks (-1: none); W0 (K, D, H), b0 (K, 1, H),
// W1 (K, H, C), b1 (K, 1, C). Returns losses (K,), gW0, gb0, gW1, gb1.
std::vector<torch::Tensor> mlp1_step(torch::Tensor x, torch::Tensor xrows, torch::Tensor u, torch::Tensor rows, torch::Tensor p,
                                     torch::Tensor s, int64_t off0, int64_t off1,
                                     torch::Tensor W0, torch::Tensor b0, torch::Tensor W1,
                                     torch::Tensor b1, torch::Tensor y) {
  const long K = W0.size(0), B = x.size(1), D = x.size(2), H = W0.size(2), C = W1.size(2);
  const long U = u.numel() ? u.size(2) : 0;
  auto opt = x.options();
  auto losses = torch::empty({K}, opt);
  auto gW0 = torch::empty({K, D, H}, opt), gb0 = torch::empty({K, 1, H}, opt);
  auto gW1 = torch::empty({K, H, C}, opt), gb1 = torch::empty({K, 1, C}, opt);
  const float *px = x.data_ptr<float>(), *pu = U ? u.data_ptr<float>() : nullptr;
  const int64_t* prow = rows.numel() ? rows.data_ptr<int64_t>() : nullptr;
  const int64_t* pxrow = xrows.numel() ? xrows.data_ptr<int64_t>() : nullptr;
  const float *pp = U ? p.data_ptr<float>() : nullptr, *ps = U ? s.data_ptr<float>() : nullptr;
  const float *pW0 = W0.data_ptr<float>(), *pb0 = b0.data_ptr<float>();
  const float *pW1 = W1.data_ptr<float>(), *pb1 = b1.data_ptr<float>(), *py = y.data_ptr<float>();
  float *pl = losses.data_ptr<float>(), *pgW0 = gW0.data_ptr<float>(), *pgb0 = gb0.data_ptr<float>();
  float *pgW1 = gW1.data_ptr<float>(), *pgb1 = gb1.data_ptr<float>();
  const float scale = (float)(2.0 / (double)(B * C));  // torch: diff.mul_(2.0 / (B * C))
  // the batch in blocks of NB rows: a block's activations, gradients and uniform rows stay in
  // L1; the sums over the batch (gW0, gW1, gb0, gb1, the loss) carry their accumulators from
  // block to block, each element's chain unchanged (b ascending)
  const long NB = 16, Hp = pad8(H), Cp = pad8(C);
  at::parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
    // padded (width a multiple of 8, zero past the real columns) weights and accumulators
    std::vector<float> W0p(D * Hp, 0.f), b0p(Hp, 0.f), W1p(H * Cp, 0.f), b1p(Cp, 0.f), w1t(C * Hp, 0.f);
    std::vector<float> gW0a(D * Hp), gW1a(C == 1 ? Hp : H * Cp), gb1a(C);
    std::vector<float> h0(NB * D), h1(NB * Hp, 0.f), out(NB * Cp, 0.f), dh(NB * Hp, 0.f), m1(NB * Hp, 0.f);
    std::vector<float> wp(Hp, 0.f), gb0a(Hp);
    const v8 zero = bcast(0.f), one = bcast(1.f);
    const long H8 = H - H % 8;
    for (int64_t k = k0; k < k1; ++k) {
      const long xr = pxrow ? pxrow[k] : k;
      const float* xk = px + xr * B * D;
      const float* yk = py + xr * B * C;
      const float* uk = pu ? pu + (prow ? prow[k] : k) * B * U : nullptr;
      const float* pk = pp ? pp + k * U : nullptr;
      const float* sk = ps ? ps + k * U : nullptr;
      const float *p0 = off0 >= 0 ? pk + off0 : nullptr, *s0 = off0 >= 0 ? sk + off0 : nullptr;
      const float *p1 = off1 >= 0 ? pk + off1 : nullptr, *s1 = off1 >= 0 ? sk + off1 : nullptr;
      const float* w = pW1 + k * H * C;  // C == 1: W1's column
      for (long i = 0; i < D; ++i) std::memcpy(W0p.data() + i * Hp, pW0 + (k * D + i) * H, H * sizeof(float));
      std::memcpy(b0p.data(), pb0 + k * H, H * sizeof(float));
      if (C == 1) {
        std::memcpy(wp.data(), w, H * sizeof(float));
      } else {
        for (long j = 0; j < H; ++j) std::memcpy(W1p.data() + j * Cp, w + j * C, C * sizeof(float));
        std::memcpy(b1p.data(), pb1 + k * C, C * sizeof(float));
        for (long j = 0; j < H; ++j)
          for (long c = 0; c < C; ++c) w1t[c * Hp + j] = w[j * C + c];
      }
      std::fill(gW0a.begin(), gW0a.end(), 0.f);
      std::fill(gW1a.begin(), gW1a.end(), 0.f);
      std::fill(gb1a.begin(), gb1a.end(), 0.f);
      std::fill(gb0a.begin(), gb0a.end(), 0.f);
      double sq = 0.0;
      for (long r0 = 0; r0 < B; r0 += NB) {
        const long R = std::min(NB, B - r0);
        const float* xb = xk + r0 * D;
        const float* ur = uk ? uk + r0 * U : nullptr;
        // masks as MLPNet.masks, (float)(u >= p) * s, computed where they are used (a (B, U)
        // mask buffer per member cost a pass and pushed the activations out of L1)
        if (off0 >= 0) {
          for (long b = 0; b < R; ++b) {
            const float* ub = ur + b * U + off0;
            float* hb = h0.data() + b * D;
            long i = 0;
            for (; i + 8 <= D; i += 8)
              store8(hb + i, load8(xb + b * D + i) * ((load8(ub + i) >= load8(p0 + i) ? one : zero) * load8(s0 + i)));
            for (; i < D; ++i) hb[i] = xb[b * D + i] * ((float)(ub[i] >= p0[i]) * s0[i]);
          }
        } else {
          std::memcpy(h0.data(), xb, R * D * sizeof(float));
        }
        // the block's hidden mask, once for the forward and the backward pass (zero past H)
        if (off1 >= 0)
          for (long b = 0; b < R; ++b) {
            const float* ub = ur + b * U + off1;
            float* mb = m1.data() + b * Hp;
            long j = 0;
            for (; j < H8; j += 8) store8(mb + j, (load8(ub + j) >= load8(p1 + j) ? one : zero) * load8(s1 + j));
            for (; j < H; ++j) mb[j] = (float)(ub[j] >= p1[j]) * s1[j];
          }
        product<false>(h0.data(), D, 1, W0p.data(), Hp, b0p.data(), h1.data(), Hp, R, D, H);
        // relu_: 0 where h <= 0, h elsewhere (NaN stays); the elementwise passes in explicit
        // vectors over the padded width (past H the values are never read into a result)
        for (long b = 0; b < R; ++b) {
          float* hb = h1.data() + b * Hp;
          const float* mb = m1.data() + b * Hp;
          for (long j = 0; j < Hp; j += 8) {
            const v8 h = load8(hb + j);
            store8(hb + j, off1 >= 0 ? (h <= zero ? zero : h) * load8(mb + j) : (h <= zero ? zero : h));
          }
        }
        if (C == 1) {
          // out[b] = b1 + sum_j h1[b, j] W1[j]: 8 partial sums over j = lane (mod 8), then added
          // in lane order, then the tail, then the bias
          for (long b = 0; b < R; ++b) out[b] = dot_out(h1.data() + b * Hp, w, H, pb1[k]);
        } else {
          product<false>(h1.data(), Hp, 1, W1p.data(), Cp, b1p.data(), out.data(), Cp, R, H, C);
        }
        const float* yb = yk + r0 * C;
        const long oc = C == 1 ? 1 : Cp;  // out's row stride
        for (long b = 0; b < R; ++b)
          for (long c = 0; c < C; ++c) {
            const float diff = out[b * oc + c] - yb[b * C + c];
            sq += (double)diff * (double)diff;
            out[b * oc + c] = diff * scale;  // now d loss / d out
          }
        // output layer: gW1 = h1^T dout, gb1 = sum_b dout
        if (C > 1)  // (C == 1: with dh below)
          product<true>(h1.data(), 1, Hp, out.data(), Cp, nullptr, gW1a.data(), Cp, H, R, C);
        for (long c = 0; c < C; ++c) {
          float acc = gb1a[c];
          for (long b = 0; b < R; ++b) acc += out[b * oc + c];
          gb1a[c] = acc;
        }
        // back into the hidden layer: dh = dout W1^T, times the mask, zero where h1 <= 0;
        // gb0[j] = sum_b dh[b, j], b ascending, rows added as vectors (a column-wise loop is a
        // serial chain of B dependent adds per unit: it cost as much as the products)
        if (C == 1) {
          // one pass: dh[b, j] = (dout[b] * W1[j]) * m1[b, j] where h1[b, j] > 0, else 0 -- the
          // same roundings as the product (one term, no bias), the mask and the threshold; with
          // it gb0 and gW1[j] = sum_b dout[b] h1[b, j] (the product's FMA chain, b ascending),
          // columns outer so the sums stay in registers across the rows. gW1's chain is the one
          // the product (M = 1: tiles of 1 x 6 vectors, then 1 x 1) compiled to: FMAs in the
          // 6-vector tiles, a product then a sum in the 1 x 1 tiles (checked bitwise against it)
          const long J6 = H - H % 48;
          for (long j = 0; j < Hp; j += 8) {
            v8 g0 = load8(gb0a.data() + j), g1 = load8(gW1a.data() + j);
            const v8 wv = load8(wp.data() + j);
            for (long b = 0; b < R; ++b) {
              const v8 ob = bcast(out[b]), h = load8(h1.data() + b * Hp + j);
              const v8 t = off1 >= 0 ? (ob * wv) * load8(m1.data() + b * Hp + j) : ob * wv;
              const v8 d = h > zero ? t : zero;
              store8(dh.data() + b * Hp + j, d);
              g0 += d;
#ifdef __FMA__
              if (j < J6) {
                g1 = (v8)_mm256_fmadd_ps((__m256)ob, (__m256)h, (__m256)g1);
              } else {
                v8 q = ob * h;
                asm("" : "+x"(q));  // keep the product rounded apart from the sum
                g1 += q;
              }
#else
              g1 += ob * h;  // no FMA: a product then a sum, as in every tile
#endif
            }
            store8(gb0a.data() + j, g0);
            store8(gW1a.data() + j, g1);
          }
        } else {
          product<false>(out.data(), Cp, 1, w1t.data(), Hp, nullptr, dh.data(), Hp, R, C, H);
          for (long b = 0; b < R; ++b) {
            float* db = dh.data() + b * Hp;
            const float* hb = h1.data() + b * Hp;
            const float* mb = m1.data() + b * Hp;
            for (long j = 0; j < Hp; j += 8) {
              v8 d = load8(db + j);
              if (off1 >= 0) d *= load8(mb + j);
              d = load8(hb + j) > zero ? d : zero;  // threshold_backward(dh, h1, 0)
              store8(db + j, d);
              store8(gb0a.data() + j, load8(gb0a.data() + j) + d);
            }
          }
        }
        product<true>(h0.data(), 1, D, dh.data(), Hp, nullptr, gW0a.data(), Hp, D, R, H);
      }
      pl[k] = (float)(sq / (double)(B * C));
      std::memcpy(pgb0 + k * H, gb0a.data(), H * sizeof(float));
      for (long i = 0; i < D; ++i) std::memcpy(pgW0 + (k * D + i) * H, gW0a.data() + i * Hp, H * sizeof(float));
      if (C == 1)
        std::memcpy(pgW1 + k * H, gW1a.data(), H * sizeof(float));
      else
        for (long j = 0; j < H; ++j) std::memcpy(pgW1 + (k * H + j) * C, gW1a.data() + j * Cp, C * sizeof(float));
      std::memcpy(pgb1 + k * C, gb1a.data(), C * sizeof(float));
    }
  });
  return {losses, gW0, gb0, gW1, gb1};
}

// droplab.functional.counter's uniforms, bit for bit (counter_fill below; counter_uniforms: row s
// is counter_uniform((B, U), seeds[s], offset=start)). Keys as counter._keys: splitmix64(seed), or of splitmix64(seed ^ splitmix64(hi))
// when the counter's high word hi is not 0; u = (mix(mix(lo + i + k0) ^ k1) >> 8) / 2**24.
static inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7FEB352DU;
  h ^= h >> 15;
  h *= 0x846CA68BU;
  return h ^ (h >> 16);
}

// 24-bit counter draws of one seed, counters c0 .. c0 + n - 1, as floats u = bits / 2**24 (the
// uniforms of counter_uniform; a high word change mid-range takes the keys of the new word).
static void counter_fill(uint64_t seed, uint64_t c0, long n, float* out) {
  long i = 0;
  while (i < n) {
    const uint64_t c = c0 + (uint64_t)i, hi = c >> 32;
    const long stop = std::min<long>(n, i + (long)((1ULL << 32) - (c & 0xFFFFFFFFULL)));
    const uint64_t k = splitmix64(hi == 0 ? seed : splitmix64(seed ^ splitmix64(hi)));
    const uint32_t k0 = (uint32_t)k, k1 = (uint32_t)(k >> 32), lo = (uint32_t)(c & 0xFFFFFFFFULL);
    for (long j = 0; j < stop - i; ++j) {
      const uint32_t h = mix32(mix32(lo + (uint32_t)j + k0) ^ k1);
      out[i + j] = (float)(h >> 8) * (1.0f / 16777216.0f);
    }
    i = stop;
  }
}

torch::Tensor counter_uniforms(torch::Tensor seeds, int64_t start, int64_t B, int64_t U) {
  const long S = seeds.size(0), n = B * U;
  auto out = torch::empty({S, B, U}, torch::TensorOptions().dtype(torch::kFloat32));
  const int64_t* ps = seeds.data_ptr<int64_t>();
  float* po = out.data_ptr<float>();
  at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) counter_fill((uint64_t)ps[s], (uint64_t)start, n, po + s * n);
  });
  return out;
}

// MC-dropout passes t0 .. t0 + T - 1 of K one-hidden-layer ReLU nets with one output, as
// MLPNet.mc_passes: member k's input mask of pass t, example n, feature i keeps iff the draw of
// seed in_seeds[owner[k]] at counter (t N + n) D + i is >= thr[k, 0] (kept values times
// scale[k, 0]); the hidden mask likewise with hid_seeds, counter (t N + n) H + j, column 1.
// Empty in_seeds / hid_seeds: no mask there. x (X, N, D), member k's at row xrows[k] (empty: k).
// Members of one owner share the draws, hashed once per block of examples. Returns (K, T, N).
torch::Tensor mc_passes(torch::Tensor x, torch::Tensor xrows, torch::Tensor W0, torch::Tensor b0,
                        torch::Tensor W1, torch::Tensor b1, torch::Tensor owner, torch::Tensor in_seeds,
                        torch::Tensor hid_seeds, torch::Tensor thr, torch::Tensor scale, int64_t t0, int64_t T) {
  const long K = W0.size(0), N = x.size(1), D = x.size(2), H = W0.size(2);
  const long O = std::max(in_seeds.numel(), hid_seeds.numel());
  auto out = torch::empty({K, T, N}, x.options());
  const float *px = x.data_ptr<float>(), *pW0 = W0.data_ptr<float>(), *pb0 = b0.data_ptr<float>();
  const float *pW1 = W1.data_ptr<float>(), *pb1 = b1.data_ptr<float>();
  const float *pthr = thr.data_ptr<float>(), *psc = scale.data_ptr<float>();
  const int64_t* pxrow = xrows.numel() ? xrows.data_ptr<int64_t>() : nullptr;
  const int64_t* pown = owner.data_ptr<int64_t>();
  const int64_t* pin = in_seeds.numel() ? in_seeds.data_ptr<int64_t>() : nullptr;
  const int64_t* phid = hid_seeds.numel() ? hid_seeds.data_ptr<int64_t>() : nullptr;
  float* po = out.data_ptr<float>();
  std::vector<std::vector<long>> members(O > 0 ? O : 1);
  for (long k = 0; k < K; ++k) members[O > 0 ? pown[k] : 0].push_back(k);
  // padded weights (width a multiple of 8, zero past H), as product wants them
  const long Hp = pad8(H);
  std::vector<float> W0p(K * D * Hp, 0.f), b0p(K * Hp, 0.f);
  for (long k = 0; k < K; ++k) {
    for (long i = 0; i < D; ++i) std::memcpy(W0p.data() + (k * D + i) * Hp, pW0 + (k * D + i) * H, H * sizeof(float));
    std::memcpy(b0p.data() + k * Hp, pb0 + k * H, H * sizeof(float));
  }
  const long NB = 32;  // examples per block: a member's block of h1 stays in L1
  at::parallel_for(0, (int64_t)members.size(), 1, [&](int64_t o0, int64_t o1) {
    std::vector<float> u0(NB * D), u1(NB * H), h0(NB * D), h1(NB * Hp);
    for (int64_t o = o0; o < o1; ++o) {
      for (long tt = 0; tt < T; ++tt) {
        const uint64_t row0 = (uint64_t)(t0 + tt) * (uint64_t)N;
        for (long n0 = 0; n0 < N; n0 += NB) {
          const long nb = std::min(NB, N - n0);
          if (pin) counter_fill((uint64_t)pin[o], (row0 + n0) * (uint64_t)D, nb * D, u0.data());
          if (phid) counter_fill((uint64_t)phid[o], (row0 + n0) * (uint64_t)H, nb * H, u1.data());
          for (long k : members[o]) {
            const float* xk = px + (pxrow ? pxrow[k] : k) * N * D + n0 * D;
            if (pin) {
              const float th = pthr[2 * k], sc = psc[2 * k];
              for (long e = 0; e < nb * D; ++e) h0[e] = xk[e] * (u0[e] >= th ? sc : 0.f);
            } else {
              std::memcpy(h0.data(), xk, nb * D * sizeof(float));
            }
            product<false>(h0.data(), D, 1, W0p.data() + k * D * Hp, Hp, b0p.data() + k * Hp, h1.data(), Hp, nb, D, H);
            const float th = pthr[2 * k + 1], sc = psc[2 * k + 1];
            const float* w = pW1 + k * H;
            float* ok = po + (k * T + tt) * N + n0;
            for (long b = 0; b < nb; ++b) {
              float* hb = h1.data() + b * Hp;
              if (phid) {
                const float* ub = u1.data() + b * H;
                for (long j = 0; j < H; ++j) hb[j] = (hb[j] <= 0.f ? 0.f : hb[j]) * (ub[j] >= th ? sc : 0.f);
              } else {
                for (long j = 0; j < H; ++j) hb[j] = hb[j] <= 0.f ? 0.f : hb[j];
              }
              ok[b] = dot_out(hb, w, H, pb1[k]);
            }
          }
        }
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mlp1_step", &mlp1_step);
  m.def("counter_uniforms", &counter_uniforms);
  m.def("mc_passes", &mc_passes);
}
"""

_lock = threading.Lock()
_state: dict[str, object] = {}


def _module():
    """The compiled kernel (built on first use, cached by torch per machine), or None."""
    with _lock:
        if "module" in _state:
            return _state["module"]
        module, reason = None, ""
        if os.environ.get("DROPLAB_FUSED_STEP", "1") == "0":
            reason = "DROPLAB_FUSED_STEP=0"
        else:
            try:
                from torch.utils.cpp_extension import load_inline

                module = load_inline(
                    "droplab_fused_step_v13", cpp_sources=[_SOURCE],
                    # -fopenmp: at::parallel_for is an OpenMP pragma in the header; without the
                    # flag it compiles to a serial loop (threads=2 ran on one core)
                    extra_cflags=["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp"],
                    extra_ldflags=["-fopenmp"], verbose=False,
                )
            except Exception as exc:  # noqa: BLE001 -- any build failure: keep the torch step
                first = str(exc).splitlines()[0][:160] if str(exc) else ""
                reason = f"build failed: {type(exc).__name__}: {first}"
        _state["module"], _state["reason"] = module, reason
        return module


def available() -> bool:
    """Whether the compiled kernel is there (builds it on the first call)."""
    return _module() is not None


def backend() -> str:
    """``"cpp"`` when the compiled kernel runs, else ``"torch (<why>)"``."""
    return "cpp" if available() else f"torch ({_state['reason']})"


def _rows(name: str, index: torch.Tensor | None, k: int, n: int) -> torch.Tensor:
    """``index`` as a contiguous int64 tensor of k rows in [0, n) (empty for None)."""
    if index is None:
        return torch.empty(0, dtype=torch.int64)
    rows = index.to(torch.int64).contiguous()
    if not (rows.shape == (k,) and 0 <= int(rows.min()) and int(rows.max()) < n):
        raise ValueError(f"{name} must hold {k} rows in [0, {n}), got shape {tuple(rows.shape)}")
    return rows


def mlp1_step(
    x: torch.Tensor,
    u: torch.Tensor | None,
    p_cols: torch.Tensor,
    s_cols: torch.Tensor,
    columns: tuple[int | None, int | None],
    W0: torch.Tensor,
    b0: torch.Tensor,
    W1: torch.Tensor,
    b1: torch.Tensor,
    y: torch.Tensor,
    seed_index: torch.Tensor | None = None,
    data_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients of K one-hidden-layer ReLU nets on the mean squared error.

    Member k: ``h0 = x_k * m0``, ``h1 = relu(h0 @ W0_k + b0_k) * m1``,
    ``out = h1 @ W1_k + b1_k``, loss ``mean((out - y_k)**2)``; masks
    ``m = (u >= p) * s`` from the columns ``columns = (input start, hidden start)`` of ``u``
    (None: no mask there). Needs :func:`available`.

    Args:
        x: ``(K, B, D)`` float32 CPU. u: ``(K, B, U)`` uniforms, or None (no dropout).
        p_cols, s_cols: ``(K, 1, U)`` thresholds and scales (``MLPNet.p_cols``/``s_cols``).
        columns: start columns of the input mask (width D) and hidden mask (width H) in u.
        W0: ``(K, D, H)``. b0: ``(K, 1, H)``. W1: ``(K, H, C)``. b1: ``(K, 1, C)``.
        y: ``(K, B, C)``.
        seed_index: ``(K,)`` int64: member k's uniforms are ``u[seed_index[k]]`` (u then holds
            one row per seed, ``(S, B, U)``, and is not copied per member); default None: ``u[k]``.
        data_index: ``(K,)`` int64: member k's batch is ``x[data_index[k]]``, ``y[data_index[k]]``
            (x, y then hold one batch per distinct data stream, ``(X, B, D)``, ``(X, B, C)``:
            members of one split and seed share theirs); default None: ``x[k]``, ``y[k]``.

    Returns:
        losses ``(K,)`` and ``{"W0", "b0", "W1", "b1"}`` gradients shaped as the weights.
    """
    m = _module()
    if m is None:
        raise RuntimeError(f"the fused step is not available: {backend()}")
    c0, c1 = columns
    if u is None:
        u, c0, c1 = torch.empty(0), None, None
    f = torch.float32
    x, u, p_cols, s_cols = (t.contiguous() if t.dtype == f else t.to(f).contiguous() for t in (x, u, p_cols, s_cols))
    k = W0.shape[0]
    rows = _rows("seed_index", seed_index if u.numel() else None, k, u.shape[0] if u.numel() else 0)
    if rows.numel() == 0 and u.numel() and u.shape[0] != k:
        raise ValueError(f"u holds {u.shape[0]} rows for {k} members: pass seed_index")
    xrows = _rows("data_index", data_index, W0.shape[0], x.shape[0])
    if xrows.numel() == 0 and x.shape[0] != W0.shape[0]:
        raise ValueError(f"x holds {x.shape[0]} batches for {W0.shape[0]} members: pass data_index")
    if y.shape[:2] != x.shape[:2]:
        raise ValueError(f"y {tuple(y.shape)} must hold the batches of x {tuple(x.shape)}")
    losses, gW0, gb0, gW1, gb1 = m.mlp1_step(
        x, xrows, u, rows, p_cols, s_cols, -1 if c0 is None else int(c0), -1 if c1 is None else int(c1),
        W0.contiguous(), b0.contiguous(), W1.contiguous(), b1.contiguous(), y.to(f).contiguous(),
    )
    return losses, {"W0": gW0, "b0": gb0, "W1": gW1, "b1": gb1}


def counter_uniforms(seeds: torch.Tensor, start: int, batch: int, width: int) -> torch.Tensor:
    """``counter_uniform((S, batch, width), seeds, offset=start)``, bit for bit, in one C++ loop.

    The per-seed uniforms of one training step of a population (each seed row counts its own
    elements from ``start``; :mod:`droplab.functional.counter` defines the draws: counter-based
    generation after Salmon et al. 2011, SC'11). About 0.05 ms for 20 x 128 x 58 uniforms on
    one core, against 0.2 ms for the compiled torch kernel and 0.47 ms for 20 mt19937 calls.
    Needs :func:`available`.

    Args:
        seeds: ``(S,)`` int64, each in [0, 2**63).
        start: counter of each row's first element, >= 0; the ``batch * width`` counters from it
            must not cross a multiple of 2**32 (true when ``start`` is a multiple of a power of
            two >= ``batch * width``).
        batch, width: the shape of one row.

    Returns:
        ``(S, batch, width)`` float32.
    """
    m = _module()
    if m is None:
        raise RuntimeError(f"the fused step is not available: {backend()}")
    n = batch * width
    if start < 0 or n > 1 << 30 or (start & 0xFFFFFFFF) + n > 1 << 32:
        raise ValueError(f"counters {start}..{start + n} cross a multiple of 2**32 or the row is too long")
    return m.counter_uniforms(seeds.to(torch.int64).contiguous(), int(start), int(batch), int(width))


def mc_passes(
    x: torch.Tensor,
    params: dict[str, torch.Tensor],
    owner: torch.Tensor,
    seeds: tuple[torch.Tensor | None, torch.Tensor | None],
    thresholds: torch.Tensor,
    scales: torch.Tensor,
    first: int,
    passes: int,
    data_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """MC-dropout passes ``first .. first + passes - 1`` of K one-hidden-layer ReLU nets, one output.

    Member k, pass t, example n: ``h0 = x_k[n] * m0``, ``h1 = relu(h0 @ W0_k + b0_k) * m1``,
    ``out = h1 @ W1_k + b1_k``; ``m0[i]`` keeps (times ``scales[k, 0]``) iff the counter draw
    (:mod:`droplab.functional.counter`) of seed ``seeds[0][owner[k]]`` at counter
    ``(t N + n) D + i`` is ``>= thresholds[k, 0]``, ``m1`` likewise with ``seeds[1]``, counter
    ``(t N + n) H + j``, column 1 -- the draws and masks of
    :meth:`droplab.sweep.population.MLPNet.mc_passes` (MC dropout: Gal & Ghahramani 2016,
    arXiv:1506.02142), in one C++ loop with no per-pass tensors; products in another
    summation order than its batched torch ops (results agree within float rounding).
    Needs :func:`available`.

    Args:
        x: ``(X, N, D)`` float32; member k's examples are ``x[data_index[k]]`` (default ``x[k]``).
        params: ``W0 (K, D, H)``, ``b0 (K, 1, H)``, ``W1 (K, H, 1)``, ``b1 (K, 1, 1)``.
        owner: ``(K,)`` int64, member k's entry in the seed tensors.
        seeds: the input and hidden positions' seeds ``(O,)`` int64, or None (no mask there).
        thresholds, scales: ``(K, 2)`` float32, per member (input, hidden).
        first, passes: the first pass's index and the number of passes.

    Returns:
        ``(K, passes, N)`` float32 outputs.
    """
    m = _module()
    if m is None:
        raise RuntimeError(f"the fused step is not available: {backend()}")
    empty = torch.empty(0, dtype=torch.int64)
    s_in, s_hid = (empty if t is None else t.to(torch.int64).contiguous() for t in seeds)
    k = params["W0"].shape[0]
    xrows = _rows("data_index", data_index, k, x.shape[0])
    if xrows.numel() == 0 and x.shape[0] != k:
        raise ValueError(f"x holds {x.shape[0]} sets of examples for {k} members: pass data_index")
    return m.mc_passes(
        x.float().contiguous(), xrows, *(params[n].contiguous() for n in ("W0", "b0", "W1", "b1")),
        owner.to(torch.int64).contiguous(), s_in, s_hid, thresholds.float().contiguous(),
        scales.float().contiguous(), int(first), int(passes),
    )
