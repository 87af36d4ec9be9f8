"""Face detection (YuNet via yuface) on real photos, tiled faces and large images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.engine.images import face_photo, photo
from vodimg.engine.faces import FaceBox, detect_faces


def tiled_faces(count: int = 3) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """``count`` copies of the astronaut's head (every other one mirrored) on a grey canvas,
    with the tile rectangles (x, y, w, h)."""
    head = face_photo()[30:230, 140:310]
    gap, top = 40, 30
    height, width = head.shape[:2]
    canvas = np.full((height + 2 * top, count * (width + gap) + gap, 3), 128, np.uint8)
    tiles = []
    for index in range(count):
        x = gap + index * (width + gap)
        canvas[top : top + height, x : x + width] = head if index % 2 == 0 else head[:, ::-1]
        tiles.append((x, top, width, height))
    return canvas, tiles


def _inside(point: tuple[float, float], rect: tuple[int, int, int, int]) -> bool:
    x, y, w, h = rect
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_one_face_on_the_astronaut_with_landmarks_inside_the_box():
    image = face_photo()
    faces = detect_faces(image)
    assert len(faces) == 1
    face = faces[0]
    assert 0.6 <= face.score <= 1.0
    assert 50 <= face.w <= 200 and 50 <= face.h <= 200  # a portrait's face on a 512 px photo
    assert len(face.landmarks) == 5
    for point in face.landmarks:
        assert _inside(point, (face.x, face.y, face.w, face.h))
    (right_eye, left_eye, nose, right_mouth, left_mouth) = face.landmarks
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "immunohistochemistry"])
def test_no_faces_on_photos_without_people(name):
    assert detect_faces(photo(name)) == []


def test_every_tiled_face_is_found_once():
    canvas, tiles = tiled_faces(3)
    faces = detect_faces(canvas)
    assert len(faces) == 3
    for tile in tiles:
        assert sum(_inside(face.center, tile) for face in faces) == 1


def test_large_image_is_detected_downscaled_and_boxes_scaled_back():
    image = face_photo()
    (small_face,) = detect_faces(image)
    big = cv2.resize(image, (2560, 2560), interpolation=cv2.INTER_CUBIC)  # 5x, above the 960 px detection size
    (big_face,) = detect_faces(big)
    for small_value, big_value in zip(
        (small_face.x, small_face.y, small_face.w, small_face.h), (big_face.x, big_face.y, big_face.w, big_face.h)
    ):
        assert abs(big_value - 5 * small_value) <= 0.04 * 5 * max(small_face.w, small_face.h)


def test_face_cut_by_the_image_edge_is_clipped_to_the_image():
    image = np.ascontiguousarray(face_photo()[80:, 200:])  # the face's left part is outside
    faces = detect_faces(image)
    assert faces, "a face cut by the edge is still found"
    height, width = image.shape[:2]
    for face in faces:
        assert face.x >= 0 and face.y >= 0 and face.x + face.w <= width and face.y + face.h <= height
        assert all(0 <= x < width and 0 <= y < height for x, y in face.landmarks)


def test_threshold_filters_by_score_and_results_are_deterministic():
    canvas, _ = tiled_faces(3)
    faces = detect_faces(canvas)
    assert faces == detect_faces(canvas)
    assert [face.score for face in faces] == sorted((face.score for face in faces), reverse=True)
    strict = detect_faces(canvas, min_score=max(face.score for face in faces) + 0.01)
    assert strict == []


def test_tiny_images_have_no_faces_and_bad_input_is_refused():
    assert detect_faces(np.zeros((8, 8, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8 BGR"):
        detect_faces(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 BGR"):
        detect_faces(np.zeros((64, 64, 3), np.float32))


def test_face_box_center():
    face = FaceBox(x=10, y=20, w=30, h=40, score=0.9, landmarks=())
    assert face.center == (25.0, 40.0)


def small_face_on_a_large_photo(face_width: int, at: tuple[int, int] = (900, 500)) -> np.ndarray:
    """The astronaut's head scaled so the detector's box is about ``face_width`` px wide, pasted
    on a 1920x1080 photo without faces."""
    portrait = photo("astronaut")
    (face,) = detect_faces(portrait)
    pad = int(0.6 * face.w)
    head = portrait[max(0, face.y - pad) : face.y + face.h + pad, max(0, face.x - pad) : face.x + face.w + pad]
    scale = face_width / face.w
    head = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = cv2.resize(photo("coffee"), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    x, y = at
    canvas[y : y + head.shape[0], x : x + head.shape[1]] = head
    return canvas


@pytest.mark.parametrize("max_side, smallest", [(960, 40), (640, 64)])
def test_smallest_face_found_is_about_20_px_at_the_detection_scale(max_side, smallest):
    # Measured at four places on the photo: found everywhere from 40 px (960) and 64 px (640),
    # nowhere below 24 px (960) and 40 px (640).
    for at in ((100, 100), (900, 500), (1500, 700)):
        assert len(detect_faces(small_face_on_a_large_photo(smallest, at), max_side=max_side)) == 1
        assert detect_faces(small_face_on_a_large_photo(smallest // 2, at), max_side=max_side) == []
