#version 330 core
// Back faces of the volume box, given in voxel indices (i, j, k) = (x, y, z).

uniform mat4 ijk_to_clip;   // projection * view * scene position * voxel-to-Å

in vec3 position;           // voxel index space, box corners at -0.5 and n - 0.5

void main()
{
  gl_Position = ijk_to_clip * vec4(position, 1.0);
}
