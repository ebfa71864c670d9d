"""PTfer Studio's Streamlit glue: page scripts live in the top-level ``app_pages/`` (not
``pages/``: Streamlit would take that folder for its old multipage mode), shared pieces here.

`services` (Streamlit caches around `ptfer_core`), `ui` (sidebar, URL state, errors) and `settings_ui` (widgets
derived from the settings dataclasses) use Streamlit; `catalog` (which models the app offers), `charts` (ECharts
figures) and `results` (which result tables exist) are plain Python. The engine itself is `ptfer_core`.
"""
