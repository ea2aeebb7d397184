"""python -m msiqa.phantom: simulate the whole study once and say how long it took."""

import time

from .study import simulate_study

t = time.perf_counter()
ct_img, pet_img, _ = simulate_study()
print(f"simulated in {time.perf_counter() - t:.1f} s", ct_img.GetSize(), pet_img.GetSize())
