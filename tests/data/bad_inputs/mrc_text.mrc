
# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0

# version 50001

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
TS_01 10.0 20.0 30.0 0.0 90.0 0.0
TS_01 11.0 21.0 31.0 10.0 80.0 5.0
