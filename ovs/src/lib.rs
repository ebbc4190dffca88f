//! Open vSwitch control. (Being written.)
