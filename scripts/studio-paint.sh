#!/usr/bin/env bash
# Paints a rough long-haired face with the brush in a running studio (DISPLAY=:99, a fresh
# HOME so the window has its default 1600 x 1000 layout), as a person would: a blank mask, hair
# in zigzags, the face row by row, neck, clothes, then small features. The lab notes' screenshots
# (docs/studio-painting.png) are of this mask. Needs xdotool.
export DISPLAY=:99
W=$(xdotool search --name 'CoDiff' | head -1)
xdotool windowfocus $W # Xvfb runs no window manager: without this the keys reach no window
X0=282; Y0=32; S=864 # the canvas's square in that layout, in screen pixels
pt() { python3 -c "print(int($X0+$S*$1), int($Y0+$S*$2))"; }
stroke() { # u1 v1 u2 v2 ... : one drag through the points, in small moves
  local pts; pts=$(python3 -c "
import sys
a=list(map(float,sys.argv[1:])); p=list(zip(a[0::2],a[1::2])); out=[p[0]]
for (u1,v1),(u2,v2) in zip(p,p[1:]):
    out+=[(u1+(u2-u1)*k/6, v1+(v2-v1)*k/6) for k in range(1,7)]
print(' '.join('%d,%d'%($X0+$S*u,$Y0+$S*v) for u,v in out))" "$@")
  local first=1
  for p in $pts; do
    xdotool mousemove ${p%,*} ${p#*,}; sleep 0.08
    if [ $first = 1 ]; then sleep 0.1; xdotool mousedown 1; first=0; sleep 0.1; fi
  done
  sleep 0.2; xdotool mouseup 1; sleep 0.4
}
key() { xdotool key "$@"; sleep 0.5; }
size() { # presses [ or ] n times
  for i in $(seq $2); do key $1; done
}
# a blank mask
xdotool mousemove 128 12 click 1; sleep 0.5
key b; size bracketright 6
# hair: a big blob to the shoulders, zigzags
key h
stroke 0.34 0.30 0.40 0.16 0.50 0.12 0.60 0.16 0.67 0.30 0.70 0.50 0.72 0.70 0.68 0.76
stroke 0.66 0.74 0.62 0.40 0.55 0.22 0.45 0.22 0.38 0.40 0.33 0.74 0.29 0.76
stroke 0.31 0.70 0.30 0.50 0.34 0.28 0.44 0.17 0.56 0.17 0.66 0.28 0.69 0.60
# the face: an oval of skin, row by row
key 1; size bracketleft 1
stroke 0.42 0.30 0.58 0.30
stroke 0.39 0.36 0.61 0.36
stroke 0.39 0.42 0.61 0.42
stroke 0.40 0.48 0.60 0.48
stroke 0.43 0.54 0.57 0.54
stroke 0.47 0.59 0.53 0.59
# neck and clothes
size bracketleft 2
key n
stroke 0.47 0.64 0.53 0.64 0.53 0.72 0.47 0.72
size bracketright 4
key c
stroke 0.15 0.98 0.30 0.86 0.50 0.82 0.70 0.86 0.85 0.98
stroke 0.20 0.98 0.80 0.98
stroke 0.30 0.92 0.70 0.92
# features, small brush
size bracketleft 9
key 5; stroke 0.425 0.405 0.46 0.405
key 4; stroke 0.54 0.405 0.575 0.405
key 7; stroke 0.41 0.355 0.47 0.35
key 6; stroke 0.53 0.35 0.59 0.355
key 2; stroke 0.50 0.42 0.50 0.475 0.49 0.48 0.51 0.48
key u; stroke 0.46 0.525 0.54 0.525
key l; stroke 0.46 0.545 0.54 0.545
key b; xdotool mousemove 1400 900
