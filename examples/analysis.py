# A stateful, multi-step analysis: each cell runs in the same kernel session
# and uses what the cells before it made. Run it with:
#   kernex run --output-dir demo-output examples/analysis.py

# %% Make a dataset: daily temperatures for two cities over a year.
import numpy as np

rng = np.random.default_rng(seed=7)
days = np.arange(365)
season = 10 * np.sin(2 * np.pi * (days - 80) / 365)
oslo = 6 + season + rng.normal(0, 2.5, days.size)
lisbon = 17 + 0.6 * season + rng.normal(0, 1.5, days.size)
print(f"made {days.size} days of data for 2 cities")

# %% Summary statistics, from the arrays of the previous cell.
for name, series in (("Oslo", oslo), ("Lisbon", lisbon)):
    print(f"{name:7s} mean {series.mean():5.1f} °C   min {series.min():5.1f}   max {series.max():5.1f}   sd {series.std():4.1f}")
warmer = np.mean(lisbon > oslo)
print(f"Lisbon is warmer than Oslo on {warmer:.0%} of days")

# %% 30-day rolling means, reusing the data and numpy from earlier cells.
kernel = np.ones(30) / 30
oslo_smooth = np.convolve(oslo, kernel, mode="valid")
lisbon_smooth = np.convolve(lisbon, kernel, mode="valid")
print(f"largest monthly gap: {np.max(lisbon_smooth - oslo_smooth):.1f} °C")

# %% A plot of everything above, saved by kernex as a PNG.
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
%matplotlib inline

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(days, oslo, ".", alpha=0.3, label="Oslo (daily)")
ax.plot(days, lisbon, ".", alpha=0.3, label="Lisbon (daily)")
ax.plot(days[29:], oslo_smooth, label="Oslo (30-day mean)")
ax.plot(days[29:], lisbon_smooth, label="Lisbon (30-day mean)")
ax.set_xlabel("day of year")
ax.set_ylabel("°C")
ax.legend()
plt.show()
