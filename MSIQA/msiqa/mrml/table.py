"""The results table: one row per slice, its columns taken from one list.

A new column is one more :class:`Column` in :data:`COLUMNS`; filling the table and updating
it after a threshold change both go through that list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import vtk

from ..results import Assessment


@dataclass(frozen=True)
class Column:
    name: str
    array_type: Callable[[], "vtk.vtkAbstractArray"]  # e.g. vtk.vtkIntArray
    values: Callable[[Assessment], Sequence]  # one value per slice
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("slice", vtk.vtkIntArray, lambda a: list(range(len(a.scores))),
           "Axial slice index k of the assessed volume"),
    Column("score", vtk.vtkDoubleArray, lambda a: np.asarray(a.scores, dtype=np.float64).tolist(),
           "Predicted quality, 0 = unusable ... 4 = excellent"),
    Column("flagged", vtk.vtkIntArray, lambda a: np.asarray(a.flagged, dtype=int).tolist(),
           "1 if the score is below the threshold"),
    Column("threshold", vtk.vtkDoubleArray, lambda a: [float(a.threshold)] * len(a.scores),
           "Flagging threshold"),
    Column("cause", vtk.vtkStringArray, lambda a: list(a.causes),
           "Most likely fault, for a flagged slice never none (msiqa.causes), empty for a model without a cause head"),
    Column("cause_confidence", vtk.vtkDoubleArray, lambda a: np.asarray(a.cause_confidence, dtype=np.float64).tolist(),
           "Probability the model gives that fault, 0-1"),
)


def _set_values(array, values: Sequence) -> None:
    array.SetNumberOfValues(len(values))
    for row, value in enumerate(values):
        array.SetValue(row, value)
    array.Modified()


def fill_table(table_node, assessment: Assessment) -> None:
    """Give ``table_node`` a new table with every column of :data:`COLUMNS`."""
    table = vtk.vtkTable()
    for column in COLUMNS:
        array = column.array_type()
        array.SetName(column.name)
        _set_values(array, column.values(assessment))
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)
    for column in COLUMNS:
        table_node.SetColumnDescription(column.name, column.description)


def refresh_table(table_node, assessment: Assessment) -> None:
    """Rewrite every column in place (e.g. after ``Assessment.with_threshold``): plot series
    that read the table follow without being rebuilt."""
    table = table_node.GetTable()
    for column in COLUMNS:
        _set_values(table.GetColumnByName(column.name), column.values(assessment))
    table.Modified()
    table_node.Modified()
