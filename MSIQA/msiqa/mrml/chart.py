"""The score chart: its layout, the plot view and the mapping of chart points back to slices."""

from __future__ import annotations

import slicer

from .tags import tag

# Slice views left, the score chart right. Built-in layout IDs are below 1000.
LAYOUT_ID = 47301
PLOT_VIEW_TAG = "PlotView1"
LAYOUT_XML = """
<layout type="horizontal" split="true">
  <item splitSize="600">
    <layout type="vertical" split="true">
      <item splitSize="500">
        <view class="vtkMRMLSliceNode" singletontag="Red">
          <property name="orientation" action="default">Axial</property>
          <property name="viewlabel" action="default">R</property>
          <property name="viewcolor" action="default">#F34A33</property>
        </view>
      </item>
      <item splitSize="300">
        <layout type="horizontal">
          <item>
            <view class="vtkMRMLSliceNode" singletontag="Yellow">
              <property name="orientation" action="default">Sagittal</property>
              <property name="viewlabel" action="default">Y</property>
              <property name="viewcolor" action="default">#EDD54C</property>
            </view>
          </item>
          <item>
            <view class="vtkMRMLSliceNode" singletontag="Green">
              <property name="orientation" action="default">Coronal</property>
              <property name="viewlabel" action="default">G</property>
              <property name="viewcolor" action="default">#6EB04B</property>
            </view>
          </item>
        </layout>
      </item>
    </layout>
  </item>
  <item splitSize="400">
    <view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
      <property name="viewlabel" action="default">P</property>
    </view>
  </item>
</layout>
"""


def _add_series(scene, table_node, ref_id: str, role: str, name: str, y_column: str,
                marker: int, line: int, color: tuple[float, float, float]):
    """A plot series of ``y_column`` against slice, from the results table."""
    series = slicer.vtkMRMLPlotSeriesNode()
    series.SetName(name)
    tag(series, ref_id, role)
    scene.AddNode(series)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("slice")
    series.SetYColumnName(y_column)
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(marker)
    series.SetLineStyle(line)
    series.SetColor(*color)
    return series


def add_chart(scene, table_node, ref_id: str, base: str):
    """The score-vs-slice series, the threshold line and their chart, read from the results
    table; returns (series, threshold series, chart)."""
    P = slicer.vtkMRMLPlotSeriesNode
    series = _add_series(scene, table_node, ref_id, "series", f"{base} quality", "score",
                         P.MarkerStyleCircle, P.LineStyleSolid, (0.16, 0.38, 0.71))
    series.SetMarkerSize(6)
    threshold_series = _add_series(scene, table_node, ref_id, "threshold", "threshold", "threshold",
                                   P.MarkerStyleNone, P.LineStyleDash, (0.85, 0.15, 0.15))
    chart = slicer.vtkMRMLPlotChartNode()
    chart.SetName(f"{base} MS-IQA chart")
    tag(chart, ref_id, "chart")
    scene.AddNode(chart)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.AddAndObservePlotSeriesNodeID(threshold_series.GetID())
    chart.SetTitle(f"Slice quality: {base}")
    chart.SetXAxisTitle("Slice k")
    chart.SetYAxisTitle("Quality score (0 unusable - 4 excellent)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(-0.2, 4.2)
    chart.SetLegendVisibility(True)
    return series, threshold_series, chart


def select_layout(scene) -> bool:
    """Register the MS-IQA layout (slice views + plot) and switch to it; False without a layout node."""
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None:
        return False
    if layout.IsLayoutDescription(LAYOUT_ID):
        layout.SetLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    else:
        layout.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    layout.SetViewArrangement(LAYOUT_ID)
    return True


def show_chart(scene, chart_id: str) -> int:
    """Show the chart in every plot view of the scene, clicks selecting points (which the
    module maps to slices); returns how many plot views there are."""
    count = scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode")
    for index in range(count):
        view = scene.GetNthNodeByClass(index, "vtkMRMLPlotViewNode")
        view.SetPlotChartNodeID(chart_id)
        view.SetInteractionMode(slicer.vtkMRMLPlotViewNode.InteractionModeSelectPoints)
    return count


def slice_index_from_plot_point(series_or_table, point_index: int) -> int:
    """The slice k of a chart point (a row of the series' table)."""
    if series_or_table.IsA("vtkMRMLPlotSeriesNode"):
        table_node = series_or_table.GetTableNode()
        column = series_or_table.GetXColumnName() or "slice"
    else:
        table_node, column = series_or_table, "slice"
    if table_node is None:
        raise ValueError("The plot series has no table.")
    table = table_node.GetTable()
    values = table.GetColumnByName(column)
    if values is None:
        raise ValueError(f"The table has no column {column!r}.")
    if not 0 <= point_index < table.GetNumberOfRows():
        raise IndexError(f"Point {point_index} is outside the table's {table.GetNumberOfRows()} rows.")
    return int(round(float(values.GetValue(point_index))))


def slice_from_plot_selection(series_id: str, data_node_ids, selections, scene) -> int | None:
    """The slice k of the first point selected on series ``series_id``, from the plot view's
    ``dataSelected(vtkStringArray*, vtkCollection*)`` arguments (plot series IDs and, per
    series, a vtkIdTypeArray of selected point indices); None when none was."""
    for index in range(data_node_ids.GetNumberOfValues()):
        points = selections.GetItemAsObject(index)
        if data_node_ids.GetValue(index) == series_id and points is not None and points.GetNumberOfValues():
            return slice_index_from_plot_point(scene.GetNodeByID(series_id), int(points.GetValue(0)))
    return None
