"""Reading back the Plotly JSON the tabs send (lessons.common.plot_data), for assertions."""
import base64
import json

import numpy as np


def load(plot) -> dict:
    """PlotData (what a gr.Plot receives) -> the figure as a dict {"data": [...], "layout": {...}}."""
    return json.loads(plot.plot)


def array(v) -> np.ndarray:
    """A Plotly JSON array: a list, or plotly.py's typed array {"dtype": "f8", "bdata": base64}."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v)
