"""PTfer Studio, the Streamlit app: page scripts live in ``pages/``, shared code here.

Only `services`, `state` and `ui` import Streamlit; `catalog`, `pipeline`, `jobs`, `presets`, `charts` and
`results` are plain Python over `ptfer_core`, so they can be used (and tested) without a running app.
"""
