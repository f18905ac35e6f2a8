"""The student-size choice of bench/distil_students.py: the fewest layers within half a point of the teacher."""

from __future__ import annotations

import importlib.util

from apps.common.settings import REPO_ROOT


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_distil", REPO_ROOT / "bench" / "distil_students.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_smallest_student_within_half_a_point_of_the_teacher_is_chosen():
    choose = bench_module().smallest_within_target
    teacher = {"test_accuracy": 0.8640, "sentences_per_s": 20.0}
    students = [{"layers": 6, "test_accuracy": 0.8620, "sentences_per_s": 100.0},
                {"layers": 4, "test_accuracy": 0.8595, "sentences_per_s": 150.0},  # 0.45 points below: kept
                {"layers": 3, "test_accuracy": 0.8580, "sentences_per_s": 200.0}]  # 0.60 points below: not
    assert choose(teacher, students) == 4
    assert [s["within_target"] for s in students] == [True, True, False]
    assert [s["accuracy_points_vs_teacher"] for s in students] == [-0.2, -0.45, -0.6]
    assert [s["speedup_vs_teacher"] for s in students] == [5.0, 7.5, 10.0]
    assert choose(teacher, [{"layers": 6, "test_accuracy": 0.85, "sentences_per_s": 40.0}]) is None
