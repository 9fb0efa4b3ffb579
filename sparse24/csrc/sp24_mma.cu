// 2:4 sparse × dense GEMM for small token counts (decode): y[M, N] = x[M, K] · W[N, K]^T, M <= 32.
//
// Memory-bound by design: the weight is the sparse operand A of mma.sp.m16n8k32, pre-shuffled offline
// (sparse24/layout.py) so that per 16×32 tile each lane loads its four A registers with ONE 16-byte load
// (a warp reads 512 contiguous bytes) and, per 4 tiles, its metadata with ONE 8-byte load. Every byte of
// the compressed weight is read once, streamed past L1. Activations are tiny and reused by every block,
// so they come through L1/L2 as 4-byte pairs in the B-fragment order.
//
// Grid: one block per NTB row tiles (16·NTB output features); its 8 warps split K round-robin in
// k-blocks of 4 tiles (128 inputs), keep fp32 partial sums in registers and reduce them through shared
// memory at the end. MT = token tiles of 8 (1, 2 or 4); every A fragment feeds MT·1 mma.sp and every
// B fragment NTB of them. No bounds checks on the weight: N is padded to 64 and K to 128 at packing.
//
// Self-contained (no CUDA headers) so that NVRTC compiles it at load time on the serving GPU and nvcc
// can build-check it in CI: `nvcc -std=c++17 -arch=sm_90 -DSP24_INSTANTIATE -cubin sp24_mma.cu`.

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;

struct __align__(16) U32x4 { u32 x, y, z, w; };
struct __align__(8) U32x2 { u32 x, y; };
struct __align__(16) F32x4 { float x, y, z, w; };

#define SP24_WARPS 8

// Weights are read once: do not let them evict the activations from L1.
__device__ __forceinline__ U32x4 load_stream16(const U32x4* p) {
  U32x4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

__device__ __forceinline__ U32x2 load_stream8(const U32x2* p) {
  U32x2 v;
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

__device__ __forceinline__ u32 load_cached4(const u32* p) {
  u32 v;
  asm("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// D = A·B + D with A 2:4 sparse. SEL is the sparsity selector: 0 → lanes t∈{0,1} of each quad supply
// the metadata, 1 → lanes t∈{2,3}. It must be an immediate, hence a template parameter.
template <bool BF16, int SEL>
__device__ __forceinline__ void mma_sp(float (&d)[4], const U32x4& a, const u32 (&b)[4], u32 e) {
  if constexpr (BF16) {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(SEL));
  } else {
    asm("mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, %13;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e),
          "n"(SEL));
  }
}

template <bool BF16>
__device__ __forceinline__ u16 to_half_bits(float v) {
  u16 h;
  if constexpr (BF16) {
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
  } else {
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  }
  return h;
}

// The weight fragments of one k-block (4 tiles) for NTB row tiles: 4 16-byte loads + 1 8-byte load each.
template <int NTB>
__device__ __forceinline__ void load_kblock(U32x4 (&a)[NTB][4], U32x2 (&e)[NTB], const U32x4* vals,
                                            const U32x2* meta, u64 vstride, u64 mstride, int kb) {
#pragma unroll
  for (int j = 0; j < NTB; ++j) {
    const U32x4* tile = vals + j * vstride + (u64)kb * 128;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) a[j][kk] = load_stream16(tile + kk * 32);
    e[j] = load_stream8(meta + j * mstride + (u64)kb * 32);
  }
}

// vals: [NT][KT][32] 16-byte A fragments; meta: [NT][KB][32] 8-byte metadata pairs (KT = 4·KB);
// x: [M][K] row-major, 4-byte aligned; y: [M][N]. M <= 8·MT, K % 4 == 0, NT % NTB == 0.
template <bool BF16, int MT, int NTB>
__global__ void __launch_bounds__(SP24_WARPS * 32) sp24_mma_gemm(
    const U32x4* __restrict__ vals, const U32x2* __restrict__ meta, const u16* __restrict__ x,
    u16* __restrict__ y, int M, int N, int K, int KB) {
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int KT = KB * 4;
  const int nt0 = blockIdx.x * NTB;
  const u64 vstride = (u64)KT * 32;  // 16-byte fragments per row tile
  const u64 mstride = (u64)KB * 32;  // 8-byte metadata pairs per row tile
  const U32x4* vbase = vals + (u64)nt0 * vstride + lane;
  const U32x2* mbase = meta + (u64)nt0 * mstride + lane;

  // Each lane feeds the B fragment of token 8·mt + g; lanes past M read row 0 and use zeros.
  const u32* xrow[MT];
  bool row_ok[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int m = mt * 8 + g;
    row_ok[mt] = m < M;
    xrow[mt] = reinterpret_cast<const u32*>(x + (u64)(row_ok[mt] ? m : 0) * K);
  }

  float acc[NTB][MT][4];
#pragma unroll
  for (int j = 0; j < NTB; ++j)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][mt][i] = 0.f;

  if (warp < KB) {
    // Software pipeline, one k-block deep: the weight loads of the next k-block are issued before the
    // mma.sp of this one, so every warp keeps two k-blocks (2·NTB·2.25 KB) in flight. The prefetch index
    // is clamped instead of branched on (the last one re-reads a block, an L2 hit) so that the loop body
    // is one basic block and ptxas cannot sink the loads next to their use.
    U32x4 a[NTB][4];
    U32x2 e[NTB];
    load_kblock<NTB>(a, e, vbase, mbase, vstride, mstride, warp);
    for (int kb = warp; kb < KB; kb += SP24_WARPS) {
      U32x4 an[NTB][4];
      U32x2 en[NTB];
      const int kn = min(kb + SP24_WARPS, KB - 1);
      load_kblock<NTB>(an, en, vbase, mbase, vstride, mstride, kn);
      // B fragments of the whole k-block (m16n8k32: reg r holds inputs k0 + 2t + 8r and the next one),
      // loaded unconditionally from a valid address and zeroed past M or K: no branches.
      u32 b[4][MT][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int k = (kb * 4 + kk) * 32 + 2 * t + 8 * r;
            const bool ok = row_ok[mt] && k < K;
            const u32 v = load_cached4(xrow[mt] + ((ok ? k : 0) >> 1));
            b[kk][mt][r] = ok ? v : 0u;
          }
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int j = 0; j < NTB; ++j) {
            // Tiles alternate selectors so that all 32 lanes' metadata bytes are useful (layout.py).
            const u32 ew = (kk < 2) ? e[j].x : e[j].y;
            if (kk & 1) {
              mma_sp<BF16, 1>(acc[j][mt], a[j][kk], b[kk][mt], ew);
            } else {
              mma_sp<BF16, 0>(acc[j][mt], a[j][kk], b[kk][mt], ew);
            }
          }
#pragma unroll
      for (int j = 0; j < NTB; ++j) {
        e[j] = en[j];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) a[j][kk] = an[j][kk];
      }
    }
  }

  // Split-K reduction across the 8 warps; [warp][j][mt][reg][lane] keeps a warp's stores conflict-free.
  __shared__ float red[SP24_WARPS][NTB][MT][4][32];
#pragma unroll
  for (int j = 0; j < NTB; ++j)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[warp][j][mt][i][lane] = acc[j][mt][i];
  __syncthreads();

  for (int o = threadIdx.x; o < NTB * MT * 128; o += blockDim.x) {
    const int l = o & 31;
    const int i = (o >> 5) & 3;
    const int mt = (o >> 7) % MT;
    const int j = (o >> 7) / MT;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < SP24_WARPS; ++w) s += red[w][j][mt][i][l];
    // Accumulator reg i of lane (g, t): output feature g + 8·(i>>1) of the tile, token 2t + (i&1).
    const int m = mt * 8 + 2 * (l & 3) + (i & 1);
    const int n = (nt0 + j) * 16 + (l >> 2) + 8 * (i >> 1);
    if (m < M && n < N) y[(u64)m * N + n] = to_half_bits<BF16>(s);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Row-group kernel (M = 9..32 above all): the k-slice kernel above has every block read all of x, so for
// 16-32 tokens the activation traffic from L2 (blocks × K × M × 2 bytes) outgrows the weight itself. Here
// the 8 warps of a block take a group of consecutive row tiles (8 in the original layout; RW·NTW with the
// warp layouts below) and walk the SAME k-blocks, so each k-block of x is copied once per block into shared
// memory (cp.async, 16-byte chunks, double-buffered) and every warp
// reads its B fragments from there with ldmatrix (one instruction per tile and token tile). K is split
// across blockIdx.y (S slices); with S > 1 each slice writes fp32 partials to `ws` and the last block of a
// row group to finish (a self-resetting counter) sums them in a fixed order and writes y. One launch, no
// host synchronisation, no memset. PF: weight prefetch distance in k-blocks (1 or 2). Needs K % 8 == 0
// and x 16-byte aligned (kernel.py checks).

#define SP24_XROW 272      // bytes per staged token row: 128 inputs + 16 bytes padding (conflict-free ldmatrix)

__device__ __forceinline__ u32 smem_u32(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ F32x4 load_l2_v4(const float* p) {  // partials: from L2, never a stale L1 line
  F32x4 v;
  asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "l"(p));
  return v;
}

// Copy k-blocks kb, kb + 1, ..., kb + KW - 1 of x (8·MT token rows × 128 inputs each) into KW consecutive
// staging slots; rows past M, inputs past K and k-blocks from kb_end on are zero-filled by cp.async itself
// (source size 0), so a warp whose k-block lies past its slice multiplies zeros and adds nothing.
template <int MT, int KW>
__device__ __forceinline__ void stage_x(unsigned char* buf, const u16* x, int M, int K, int kb, int kb_end) {
  for (int q = threadIdx.x; q < KW * MT * 128; q += SP24_WARPS * 32) {
    const int slot = q / (MT * 128), r = q % (MT * 128);
    const int row = r >> 4, c = r & 15;
    const int k = (kb + slot) * 128 + c * 8;
    const bool ok = row < M && k < K && kb + slot < kb_end;
    cp_async16(smem_u32(buf + (slot * MT * 8 + row) * SP24_XROW + c * 16), x + (ok ? (u64)row * K + k : 0),
               ok);
  }
}

// vals/meta as above; y: [M][N]; ws: [S][M][16·NT] fp32 partials (S > 1); counters: >= gridDim.x zeros.
// The 8 warps form RW row lanes × KW k lanes; warp (rw, kw) owns row tiles NTW·rw .. NTW·rw + NTW - 1 of
// the block's group of RW·NTW tiles and, within the block's K slice, k-blocks kb0 + kw, kb0 + kw + KW, ...
// The KW partial sums of a tile are added in shared memory in k-lane order (deterministic) before the
// split-K epilogue. RW = 8, KW = 1, NTW = 1 is the original row-group kernel.
template <bool BF16, int MT, int PF, int RW, int KW, int NTW>
__global__ void __launch_bounds__(SP24_WARPS * 32) sp24_mma_rows(
    const U32x4* __restrict__ vals, const U32x2* __restrict__ meta, const u16* __restrict__ x,
    u16* __restrict__ y, float* __restrict__ ws, int* __restrict__ counters, int M, int N, int K, int KB,
    int NT, int S) {
  static_assert(RW * KW == SP24_WARPS, "8 warps per block");
  constexpr int G = RW * NTW;                      // row tiles per block
  constexpr int SLOT = MT * 8 * SP24_XROW;         // bytes of one staged k-block
  static_assert(2 * KW * SLOT <= 48 * 1024, "static shared memory");
  static_assert((KW - 1) * RW * NTW * MT * 512 <= 2 * KW * SLOT, "reduction reuses the staging buffers");
  __shared__ __align__(16) unsigned char xs[2][KW * SLOT];
  __shared__ int is_last;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int rw = warp % RW;
  const int kw = warp / RW;
  const int nt = blockIdx.x * G + rw * NTW;  // first row tile of this warp (NT % NTW == 0)
  const bool active = nt < NT;  // the last group may have idle warps: they load tile 0, store nothing
  const int s = blockIdx.y;
  const int kb0 = (int)((long long)KB * s / S);
  const int kb1 = (int)((long long)KB * (s + 1) / S);
  const int steps = (kb1 - kb0 + KW - 1) / KW;
  const u64 vstride = (u64)KB * 128;
  const u64 mstride = (u64)KB * 32;
  const U32x4* vbase = vals + (u64)(active ? nt : 0) * vstride + lane;
  const U32x2* mbase = meta + (u64)(active ? nt : 0) * mstride + lane;
  // ldmatrix.x4: lane l gives the address of row l&7 of matrix l>>3 (inputs 8·(l>>3).. of the tile).
  const int lrow = lane & 7;
  const int lcol = (lane >> 3) * 16;  // bytes

  float acc[NTW][MT][4];
#pragma unroll
  for (int j = 0; j < NTW; ++j)
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][mt][i] = 0.f;

  if (steps > 0) {
    stage_x<MT, KW>(xs[0], x, M, K, kb0, kb1);
    cp_async_commit();
    // Weights PF steps ahead: w[0] = step i, ..., w[PF-1] = step i + PF - 1 already requested, w[PF]
    // requested in the iteration. ptxas places a prefetch as late as the end of its iteration, so PF = 2
    // keeps a k-block of weights in flight behind each barrier and x copy, for more registers (fewer
    // blocks per SM): which one wins depends on the shape, so both are measured (kernel.py). A k-block
    // index past the slice is clamped (a re-read, an L2 hit) and meets zeros in x.
    U32x4 a[PF + 1][NTW][4];
    U32x2 e[PF + 1][NTW];
#pragma unroll
    for (int p = 0; p < PF; ++p)
      load_kblock<NTW>(a[p], e[p], vbase, mbase, vstride, mstride, min(kb0 + p * KW + kw, kb1 - 1));
    for (int i = 0; i < steps; ++i) {
      const int buf = i & 1;
      cp_async_wait_all();
      __syncthreads();  // x(step i) visible to all warps; everyone is done reading the other buffer
      if (i + 1 < steps) stage_x<MT, KW>(xs[buf ^ 1], x, M, K, kb0 + (i + 1) * KW, kb1);
      cp_async_commit();
      load_kblock<NTW>(a[PF], e[PF], vbase, mbase, vstride, mstride,
                       min(kb0 + (i + PF) * KW + kw, kb1 - 1));
      u32 b[4][MT][4];
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          ldmatrix_x4(b[kk][mt],
                      smem_u32(xs[buf] + kw * SLOT + (mt * 8 + lrow) * SP24_XROW + kk * 64 + lcol));
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int j = 0; j < NTW; ++j) {
            const u32 ew = (kk < 2) ? e[0][j].x : e[0][j].y;
            if (kk & 1) {
              mma_sp<BF16, 1>(acc[j][mt], a[0][j][kk], b[kk][mt], ew);
            } else {
              mma_sp<BF16, 0>(acc[j][mt], a[0][j][kk], b[kk][mt], ew);
            }
          }
#pragma unroll
      for (int p = 0; p < PF; ++p)
#pragma unroll
        for (int j = 0; j < NTW; ++j) {
          e[p][j] = e[p + 1][j];
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) a[p][j][kk] = a[p + 1][j][kk];
        }
    }
  }

  if constexpr (KW > 1) {
    // k lanes 1..KW-1 hand their partials to k lane 0 through the (now idle) staging buffers;
    // [lane slot][j][mt][reg][lane] keeps every warp's stores and loads conflict-free.
    cp_async_wait_all();
    __syncthreads();
    float* red = reinterpret_cast<float*>(&xs[0][0]);
    constexpr int PER = NTW * MT * 4 * 32;  // floats per warp
    if (kw > 0) {
#pragma unroll
      for (int j = 0; j < NTW; ++j)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int i = 0; i < 4; ++i)
            red[((kw - 1) * RW + rw) * PER + ((j * MT + mt) * 4 + i) * 32 + lane] = acc[j][mt][i];
    }
    __syncthreads();
    if (kw == 0) {
#pragma unroll
      for (int q = 1; q < KW; ++q)
#pragma unroll
        for (int j = 0; j < NTW; ++j)
#pragma unroll
          for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i)
              acc[j][mt][i] += red[((q - 1) * RW + rw) * PER + ((j * MT + mt) * 4 + i) * 32 + lane];
    }
  }
  const bool writer = active && kw == 0;

  // Accumulator reg i of lane (g, t): output feature 16·(nt + j) + g + 8·(i>>1), token 8·mt + 2t + (i&1).
  if (S == 1) {
    if (writer) {
#pragma unroll
      for (int j = 0; j < NTW; ++j)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int m = mt * 8 + 2 * t + (i & 1);
            const int n = (nt + j) * 16 + g + 8 * (i >> 1);
            if (m < M && n < N) y[(u64)m * N + n] = to_half_bits<BF16>(acc[j][mt][i]);
          }
    }
    return;
  }
  const u64 np = (u64)NT * 16;
  if (writer) {
#pragma unroll
    for (int j = 0; j < NTW; ++j)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int m = mt * 8 + 2 * t + (i & 1);
          const int n = (nt + j) * 16 + g + 8 * (i >> 1);
          if (m < M) ws[((u64)s * M + m) * np + n] = acc[j][mt][i];
        }
  }
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(&counters[blockIdx.x], 1) == S - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  // Sum the S partials of the group's 16·G features × M tokens: 4 features per 16-byte load, 4 slices'
  // loads in flight per thread, always added in slice order (deterministic).
  const int quads = G * 4;
  for (int o = threadIdx.x; o < quads * M; o += SP24_WARPS * 32) {
    const int m = o / quads;
    const int n = blockIdx.x * quads * 4 + (o % quads) * 4;
    if (n >= N) continue;
    F32x4 sum = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
    for (int j = 0; j < S; ++j) {
      const F32x4 v = load_l2_v4(ws + ((u64)j * M + m) * np + n);
      sum.x += v.x;
      sum.y += v.y;
      sum.z += v.z;
      sum.w += v.w;
    }
    u16* out = y + (u64)m * N + n;
    out[0] = to_half_bits<BF16>(sum.x);
    if (n + 1 < N) out[1] = to_half_bits<BF16>(sum.y);
    if (n + 2 < N) out[2] = to_half_bits<BF16>(sum.z);
    if (n + 3 < N) out[3] = to_half_bits<BF16>(sum.w);
  }
  if (threadIdx.x == 0) counters[blockIdx.x] = 0;  // ready for the next launch
}

#ifdef SP24_INSTANTIATE
// nvcc needs explicit instances to emit code; NVRTC instantiates by name expression instead.
#define SP24_INST(BF, MT, NTB)                                                                    \
  template __global__ void sp24_mma_gemm<BF, MT, NTB>(const U32x4*, const U32x2*, const u16*, u16*, \
                                                      int, int, int, int);
SP24_INST(true, 1, 1) SP24_INST(true, 1, 2) SP24_INST(true, 1, 4)
SP24_INST(true, 2, 1) SP24_INST(true, 2, 2) SP24_INST(true, 2, 4)
SP24_INST(true, 4, 1) SP24_INST(true, 4, 2)
SP24_INST(false, 1, 1) SP24_INST(false, 1, 2) SP24_INST(false, 1, 4)
SP24_INST(false, 2, 1) SP24_INST(false, 2, 2) SP24_INST(false, 2, 4)
SP24_INST(false, 4, 1) SP24_INST(false, 4, 2)

#define SP24_INST_ROWS(BF, MT, PF, RW, KW, NTW)                                                        \
  template __global__ void sp24_mma_rows<BF, MT, PF, RW, KW, NTW>(const U32x4*, const U32x2*, const u16*, \
                                                                  u16*, float*, int*, int, int, int, int, \
                                                                  int, int);
#define SP24_INST_ROWS_CFG(BF, MT, PF) \
  SP24_INST_ROWS(BF, MT, PF, 8, 1, 1) SP24_INST_ROWS(BF, MT, PF, 4, 2, 1) \
  SP24_INST_ROWS(BF, MT, PF, 4, 2, 2) SP24_INST_ROWS(BF, MT, PF, 8, 1, 2)
#define SP24_INST_ROWS_ALL(BF)                                                                            \
  SP24_INST_ROWS_CFG(BF, 1, 1) SP24_INST_ROWS_CFG(BF, 2, 1) SP24_INST_ROWS_CFG(BF, 4, 1)                  \
  SP24_INST_ROWS_CFG(BF, 1, 2) SP24_INST_ROWS_CFG(BF, 2, 2) SP24_INST_ROWS_CFG(BF, 4, 2)                  \
  SP24_INST_ROWS(BF, 1, 1, 2, 4, 2) SP24_INST_ROWS(BF, 2, 1, 2, 4, 2)                                     \
  SP24_INST_ROWS(BF, 1, 2, 2, 4, 2) SP24_INST_ROWS(BF, 2, 2, 2, 4, 2)
SP24_INST_ROWS_ALL(true)
SP24_INST_ROWS_ALL(false)
#endif
