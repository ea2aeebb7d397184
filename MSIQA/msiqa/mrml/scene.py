"""Scenes without the Slicer application: a fresh scene with the logics volumes and colours need."""

from __future__ import annotations

from contextlib import contextmanager

import slicer
import vtk


@contextmanager
def quiet_vtk():
    """Silence VTK error/warning output for a known-noisy call, then restore it."""
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)


def create_scene() -> tuple["slicer.vtkMRMLScene", "slicer.vtkSlicerApplicationLogic"]:
    """A fresh scene with the application and colour logic that volumes and colours need.

    Keep the returned application logic referenced as long as the scene is used.
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    with quiet_vtk():  # "no default colour files" is expected without the Slicer install
        colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    # SetModuleLogic keeps no reference: a collected colour logic takes its colour nodes with it
    app.msiqa_color_logic = colors
    return scene, app
