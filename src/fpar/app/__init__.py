"""fpar.app: the Streamlit app (`fpar app`): upload an image or a video, see each chosen model's CAM.

`catalog` finds the checkpoints of a runs folder, `launch` starts Streamlit on `streamlit_app.py`.
"""
