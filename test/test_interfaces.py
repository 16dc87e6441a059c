"""The interface files parse, every field type exists, and the build files agree with them.

A small parser of the .msg/.srv/.action grammar (no ROS needed) checks what rosidl would
reject at build time on a machine without ROS: field and constant syntax, names, types that
are builtin, of this package, or known messages of a dependency declared in package.xml and
in CMakeLists.txt's rosidl_generate_interfaces(DEPENDENCIES ...).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'spatial_llava_ros'

BUILTIN_TYPES = {
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
    'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring',
}
INTEGER_TYPES = {t for t in BUILTIN_TYPES if 'int' in t} | {'byte', 'char'}

# External message types the interfaces use, with the package that provides them (the
# message definitions as shipped in Humble and Jazzy). Adding a field of another external
# type means adding it here, which makes one check that its package is declared.
EXTERNAL_TYPES = {
    'std_msgs/Header': 'std_msgs',
    'builtin_interfaces/Time': 'builtin_interfaces',
    'builtin_interfaces/Duration': 'builtin_interfaces',
    'geometry_msgs/Point': 'geometry_msgs',
    'geometry_msgs/PointStamped': 'geometry_msgs',
    'geometry_msgs/Pose': 'geometry_msgs',
    'geometry_msgs/PoseStamped': 'geometry_msgs',
    'vision_msgs/BoundingBox2D': 'vision_msgs',
    'vision_msgs/Point2D': 'vision_msgs',
}

FIELD_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
CONSTANT_NAME = re.compile(r'^[A-Z][A-Z0-9_]*$')
TYPE_RE = re.compile(
    r'^(?:(?P<pkg>[a-z][a-z0-9_]*)/)?(?P<name>[A-Za-z][A-Za-z0-9_]*)'
    r'(?P<bound><=\d+)?(?P<array>\[(?:<=)?\d*\])?$'
)


@dataclass
class Field:
    type_pkg: str | None
    type_name: str
    name: str
    is_array: bool
    line: int


@dataclass
class Constant:
    type_name: str
    name: str
    value: str
    line: int


class ParseError(ValueError):
    pass


def parse_section(text: str, where: str) -> tuple[list[Field], list[Constant]]:
    """Parse one message body (a .msg, or one part of a .srv/.action)."""
    fields: list[Field] = []
    constants: list[Constant] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        type_token, _, rest = line.partition(' ')
        rest = rest.strip()
        match = TYPE_RE.match(type_token)
        if match is None:
            raise ParseError(f'{where}:{number}: bad type {type_token!r}')
        if '=' in rest.split('#')[0] and not rest.split('#')[0].split('=')[0].strip().islower():
            name, _, value = rest.partition('=')
            name = name.strip()
            if match['pkg'] or match['array'] or match['name'] not in BUILTIN_TYPES:
                raise ParseError(f'{where}:{number}: constant {name} must have a builtin '
                                 f'scalar type, got {type_token}')
            if not CONSTANT_NAME.match(name):
                raise ParseError(f'{where}:{number}: constant name {name!r} must be UPPER_CASE')
            value = value if match['name'] in ('string', 'wstring') else value.split('#')[0]
            value = value.strip()
            if match['name'] in INTEGER_TYPES:
                int(value)
            constants.append(Constant(match['name'], name, value, number))
            continue
        tokens = rest.split('#')[0].split()
        if not tokens:
            raise ParseError(f'{where}:{number}: field of type {type_token} has no name')
        name = tokens[0]
        if not FIELD_NAME.match(name) or '__' in name or name.endswith('_'):
            raise ParseError(f'{where}:{number}: field name {name!r} must be snake_case')
        if len(tokens) > 2:
            raise ParseError(f'{where}:{number}: unexpected tokens after {name}: {tokens[2:]}')
        fields.append(Field(match['pkg'], match['name'], name, bool(match['array']), number))
    names = [f.name for f in fields] + [c.name for c in constants]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ParseError(f'{where}: duplicate names {sorted(dupes)}')
    return fields, constants


def interface_files() -> list[Path]:
    files = []
    for sub, ext in (('msg', '.msg'), ('srv', '.srv'), ('action', '.action')):
        directory = ROOT / sub
        if directory.is_dir():
            files += sorted(directory.glob(f'*{ext}'))
    return files


def parse_file(path: Path) -> list[tuple[list[Field], list[Constant]]]:
    text = path.read_text(encoding='utf-8')
    parts = re.split(r'^---\s*$', text, flags=re.MULTILINE)
    expected = {'.msg': 1, '.srv': 2, '.action': 3}[path.suffix]
    if len(parts) != expected:
        raise ParseError(f'{path.name}: {len(parts)} sections, expected {expected}')
    return [parse_section(part, path.name) for part in parts]


def own_types() -> set[str]:
    return {p.stem for p in (ROOT / 'msg').glob('*.msg')}


def package_xml_deps() -> set[str]:
    tree = ET.parse(ROOT / 'package.xml')
    tags = ('depend', 'build_depend', 'exec_depend', 'build_export_depend')
    return {el.text.strip() for tag in tags for el in tree.getroot().iter(tag)}


def cmake_text() -> str:
    return (ROOT / 'CMakeLists.txt').read_text(encoding='utf-8')


def rosidl_dependencies() -> set[str]:
    match = re.search(r'rosidl_generate_interfaces\((.*?)\)', cmake_text(), re.DOTALL)
    assert match, 'CMakeLists.txt has no rosidl_generate_interfaces()'
    body = match.group(1)
    assert 'DEPENDENCIES' in body, 'rosidl_generate_interfaces() lists no DEPENDENCIES'
    return set(body.split('DEPENDENCIES', 1)[1].split())


FILES = interface_files()


def test_there_are_interfaces():
    names = {p.name for p in FILES}
    for required in ('SpatialQuery.msg', 'SpatialResult.msg', 'Mark.msg', 'MarkArray.msg',
                     'ResolveSpatialQuery.action'):
        assert required in names


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.name)
def test_every_field_type_exists_and_its_package_is_declared(path):
    declared = package_xml_deps()
    rosidl_deps = rosidl_dependencies()
    ours = own_types()
    for fields, _ in parse_file(path):
        for field in fields:
            if field.type_pkg is None and field.type_name in BUILTIN_TYPES:
                continue
            if field.type_pkg in (None, PACKAGE):
                assert field.type_name in ours, \
                    f'{path.name}:{field.line}: {field.type_name} is not a msg of {PACKAGE}'
                continue
            full = f'{field.type_pkg}/{field.type_name}'
            assert full in EXTERNAL_TYPES, \
                f'{path.name}:{field.line}: unknown external type {full}'
            pkg = EXTERNAL_TYPES[full]
            assert pkg in declared, f'{path.name}: {pkg} (for {full}) missing in package.xml'
            assert pkg in rosidl_deps, \
                f'{path.name}: {pkg} (for {full}) missing in rosidl DEPENDENCIES'


def test_every_message_has_a_comment_per_field():
    # "documented field by field": each field line is preceded by a comment line, or a
    # field in the same block of lines is (a block = consecutive non-blank lines).
    for path in FILES:
        lines = path.read_text(encoding='utf-8').splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            if not s or s.startswith('#') or s == '---':
                continue
            j = i - 1
            while j >= 0 and lines[j].strip() and not lines[j].strip().startswith('#'):
                j -= 1
            has_comment = (j >= 0 and lines[j].strip().startswith('#')) or '#' in s
            assert has_comment, f'{path.name}:{i + 1}: undocumented line {s!r}'


def test_query_action_constants_are_distinct_and_shared_by_the_action():
    (fields, constants), = parse_file(ROOT / 'msg' / 'SpatialQuery.msg')
    values = {c.name: int(c.value) for c in constants}
    assert set(values) == {'LOCATE', 'NAVIGATE', 'MANIPULATE'}
    assert len(set(values.values())) == 3
    assert values['LOCATE'] == 0  # the default never moves the robot
    action_field = next(f for f in fields if f.name == 'action')
    assert action_field.type_name == 'uint8'
    goal, result, feedback = parse_file(ROOT / 'action' / 'ResolveSpatialQuery.action')
    goal_fields = {f.name: f.type_name for f in goal[0]}
    assert goal_fields['action'] == 'uint8' and goal_fields['navigate'] == 'bool'
    assert [f.type_name for f in result[0] if f.name == 'result'] == ['SpatialResult']
    assert {'stage', 'progress'} <= {f.name for f in feedback[0]}


def test_result_carries_what_the_issue_asks_for():
    (fields, _), = parse_file(ROOT / 'msg' / 'SpatialResult.msg')
    types = {f.name: (f'{f.type_pkg}/{f.type_name}' if f.type_pkg else f.type_name)
             for f in fields}
    assert types['header'] == 'std_msgs/Header'
    assert types['success'] == 'bool' and types['reason'] == 'string'
    assert types['mark_id'] == 'int32' and types['confidence'] == 'float32'
    assert types['mark_ids'] == 'int32' and types['scores'] == 'float32'
    assert types['target_point'] == 'geometry_msgs/PointStamped'
    assert types['goal_pose'] == 'geometry_msgs/PoseStamped'
    assert types['box'] == 'vision_msgs/BoundingBox2D'
    assert types['frame_stamp'] == 'builtin_interfaces/Time'


def test_cmake_lists_every_interface_file_and_nothing_else():
    text = cmake_text()
    listed = set(re.findall(r'"((?:msg|srv|action)/[A-Za-z0-9_]+\.(?:msg|srv|action))"', text))
    on_disk = {str(p.relative_to(ROOT)) for p in FILES}
    assert listed == on_disk


def test_package_xml_declares_the_issue_dependencies():
    deps = package_xml_deps()
    tree = ET.parse(ROOT / 'package.xml')
    root = tree.getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == PACKAGE
    assert root.find('export/build_type').text == 'ament_cmake'
    buildtool = {el.text for el in root.iter('buildtool_depend')}
    test_deps = {el.text for el in root.iter('test_depend')}
    assert {'ament_cmake', 'rosidl_default_generators'} <= buildtool
    required = {'rclpy', 'sensor_msgs', 'geometry_msgs', 'std_msgs', 'vision_msgs', 'nav2_msgs',
                'tf2_ros', 'tf2_geometry_msgs', 'message_filters', 'cv_bridge', 'launch',
                'launch_ros', 'rosidl_default_runtime', 'action_msgs', 'builtin_interfaces'}
    assert required <= deps, sorted(required - deps)
    assert {'launch_testing', 'launch_testing_ros', 'ament_cmake_pytest'} <= test_deps
    assert 'rosidl_interface_packages' in {el.text for el in root.iter('member_of_group')}
    for key in ('python3-numpy', 'python3-opencv', 'python3-scipy', 'python3-yaml'):
        assert key in deps


def test_cmake_does_not_call_ament_python_install_package_for_the_package():
    # ros2/rosidl_python#141: it collides with the generated interfaces on Humble/Jazzy.
    code = '\n'.join(line.split('#')[0] for line in cmake_text().splitlines())
    assert 'ament_python_install_package' not in code
    assert re.search(r'install\(DIRECTORY \$\{PROJECT_NAME\}/', code)


def test_parser_rejects_what_rosidl_rejects():
    with pytest.raises(ParseError, match='snake_case'):
        parse_section('int32 MarkId', 'x.msg')
    with pytest.raises(ParseError, match='bad type'):
        parse_section('int32[x] ids', 'x.msg')
    with pytest.raises(ParseError, match='duplicate'):
        parse_section('int32 a\nfloat32 a', 'x.msg')
    with pytest.raises(ParseError, match='UPPER_CASE'):
        parse_section('uint8 Locate=0', 'x.msg')
    with pytest.raises(ValueError):
        parse_section('uint8 LOCATE=zero', 'x.msg')
    fields, constants = parse_section(
        'string<=8 name  # comment\nint32[<=4] ids\nfloat64[3] v\nstring S="a # b"', 'x.msg')
    assert [f.name for f in fields] == ['name', 'ids', 'v'] and constants[0].name == 'S'
