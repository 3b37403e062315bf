"""The airflow package's modules import each other one way: no cycle, and nothing below imports them."""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("modelwatch")


def test_no_module_of_the_airflow_package_is_in_an_import_cycle(graph: grimp.ImportGraph) -> None:
    modules = sorted(m for m in graph.modules if m.startswith("modelwatch.airflow."))
    cycles = [
        (module, imported)
        for module in modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.find_shortest_chain(importer=imported, imported=module)
    ]
    assert cycles == []


def test_the_configuration_location_is_not_the_dag_factory(graph: grimp.ImportGraph) -> None:
    """Tasks and the plugin find the monitors folder without building DAGs."""
    for module in ("modelwatch.airflow.tasks", "modelwatch.airflow.plugin", "modelwatch.airflow.monitors_folder"):
        assert graph.find_shortest_chain(importer=module, imported="modelwatch.airflow.dag_factory") is None


def test_the_overview_page_imports_no_airflow(graph: grimp.ImportGraph) -> None:
    assert graph.find_shortest_chain(importer="modelwatch.app.overview", imported="modelwatch.airflow") is None
    assert not any(
        graph.find_shortest_chain(importer="modelwatch.app.overview", imported=m)
        for m in graph.modules
        if m.startswith("modelwatch.airflow.")
    )
