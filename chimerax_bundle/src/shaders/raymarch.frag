#version 330 core
// Front-to-back ray marching through the tomogram's class maps (Nano-Otzi eq. 2-3).
//
// Per sample, the classes are composited in their fixed order with opacity
// ramp(p_i; a_i) * ramp(raw; lo, hi) * opacity and material colour c_i, the sum is lit by the
// precomputed ambient-occlusion x soft-shadow factor, and the sample's opacity is corrected
// for the step length (1 - (1 - alpha)^step, step in voxels), as the engine's CPU renderer
// does. The output is premultiplied colour and coverage, blended with (ONE, 1 - SRC_ALPHA).

#define MAX_CLASSES 8
#define MAX_PLANES 8

uniform sampler3D classes_lo;     // classes 1-4 in R, G, B, A
uniform sampler3D classes_hi;     // classes 5-8
uniform sampler3D raw_light;      // R: inverted low-passed raw in [0, 1]; G: illumination factor
uniform int n_classes;
uniform vec3 colors[MAX_CLASSES];
uniform float lows[MAX_CLASSES];  // left ramp limits a_i
uniform vec2 raw_ramp;            // (low, high) of the raw-data ramp
uniform float opacity;
uniform float illumination_on;    // 1: use the AO x shadow factor, 0: unlit
uniform vec3 grid_size;           // (nx, ny, nz) voxels
uniform float step_voxels;        // sample spacing along the ray, voxels
uniform mat4 clip_to_ijk;         // inverse of ijk_to_clip
uniform vec4 viewport;            // x, y, width, height in pixels
uniform int n_planes;
uniform vec4 planes[MAX_PLANES];  // clip planes in voxel index space: keep dot(p, (x, 1)) >= 0

out vec4 frag_color;

float ramp(float v, float lo, float hi)
{
  return clamp((v - lo) / (hi - lo), 0.0, 1.0);
}

vec3 unproject(vec2 ndc, float z)
{
  vec4 p = clip_to_ijk * vec4(ndc, z, 1.0);
  return p.xyz / p.w;
}

void main()
{
  vec2 ndc = 2.0 * (gl_FragCoord.xy - viewport.xy) / viewport.zw - 1.0;
  vec3 origin = unproject(ndc, -1.0);
  vec3 toward = unproject(ndc, 1.0) - origin;
  float ray_length = length(toward);
  vec3 dir = toward / ray_length;

  // Ray against the box [-0.5, n - 0.5] (voxel centres at integer indices).
  vec3 inv = 1.0 / dir;
  vec3 t0 = (vec3(-0.5) - origin) * inv;
  vec3 t1 = (grid_size - 0.5 - origin) * inv;
  vec3 tmin = min(t0, t1), tmax = max(t0, t1);
  float t_enter = max(max(max(tmin.x, tmin.y), tmin.z), 0.0);
  float t_exit = min(min(min(tmax.x, tmax.y), tmax.z), ray_length);
  for (int i = 0; i < n_planes; ++i) {
    float a = dot(planes[i].xyz, origin) + planes[i].w;
    float b = dot(planes[i].xyz, dir);
    if (b > 0.0) t_enter = max(t_enter, -a / b);
    else if (b < 0.0) t_exit = min(t_exit, -a / b);
    else if (a < 0.0) discard;
  }
  if (t_exit <= t_enter) discard;

  vec3 color = vec3(0.0);
  float transmittance = 1.0;
  float raw_span = raw_ramp.y - raw_ramp.x;
  // Sample positions on a fixed lattice along the ray, so that moving the entry point (a
  // clip plane) does not make the samples crawl.
  float t = (floor(t_enter / step_voxels) + 0.5) * step_voxels;
  for (int n = 0; n < 16384 && t < t_exit; ++n, t += step_voxels) {
    vec3 tc = (origin + t * dir + 0.5) / grid_size;
    vec4 rl = texture(raw_light, tc);
    float raw_alpha = clamp((rl.r - raw_ramp.x) / raw_span, 0.0, 1.0) * opacity;
    if (raw_alpha <= 0.0) continue;
    vec4 lo = texture(classes_lo, tc);
    vec4 hi = n_classes > 4 ? texture(classes_hi, tc) : vec4(0.0);
    float p[MAX_CLASSES] = float[](lo.r, lo.g, lo.b, lo.a, hi.r, hi.g, hi.b, hi.a);
    vec3 sample_color = vec3(0.0);
    float sample_trans = 1.0;
    for (int c = 0; c < n_classes; ++c) {
      float a = ramp(p[c], lows[c], 1.0) * raw_alpha;
      sample_color += sample_trans * a * colors[c];
      sample_trans *= 1.0 - a;
    }
    float alpha = min(1.0 - sample_trans, 1.0 - 1e-6);
    if (alpha <= 0.0) continue;
    float light = mix(1.0, rl.g, illumination_on);
    float corrected = 1.0 - pow(1.0 - alpha, step_voxels);
    color += transmittance * sample_color * light * (corrected / alpha);
    transmittance *= 1.0 - corrected;
    if (transmittance < 1.0 / 1024.0) break;
  }
  frag_color = vec4(color, 1.0 - transmittance);
}
