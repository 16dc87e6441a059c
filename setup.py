"""pip entry point: installs the ROS-free core and the ``spatial-llava`` command.

colcon builds the same package through CMakeLists.txt (ament_cmake); this file is
only for ``pip install .`` on machines with or without ROS 2.
"""

from setuptools import find_packages, setup

CORE = [
    'numpy>=1.26,<3',
    'opencv-contrib-python-headless>=4.8,<5',
    'scipy>=1.10',
    'pillow>=10',
    'pyyaml>=6',
    'tqdm>=4.66',
    'matplotlib>=3.7',
    'rosbags>=0.10,<0.12',
    'torch>=2.4',
    'transformers>=5.0,<6',
    'safetensors>=0.4',
    'tokenizers>=0.20',
    'onnx>=1.16',
    'onnxscript>=0.3',
    'onnxruntime>=1.18',
]

EXTRAS = {
    'gpu': ['onnxruntime-gpu>=1.18'],
    'train': ['peft>=0.13', 'trl>=1.0', 'accelerate>=1.0', 'datasets>=3.0'],
    'speech': ['pocketsphinx>=5.0', 'silero-vad>=5.1'],
    # the remote resolver's client (openai), and `transformers serve` for its tests and for
    # serving a checkpoint without vLLM (transformers[serving] without the torch it repeats)
    'serve': ['openai>=1.98', 'fastapi>=0.110', 'uvicorn>=0.29', 'starlette', 'rich'],
    # scikit-image: its bundled real photographs and Middlebury stereo pair (with disparity)
    # are the real frames of the marks property tests (test/real_frames.py)
    'dev': ['pytest>=8', 'hypothesis>=6.100', 'ruff>=0.6', 'scikit-image>=0.25'],
}
EXTRAS['all'] = sorted({dep for name, deps in EXTRAS.items() if name != 'gpu' for dep in deps})

setup(
    name='spatial_llava_ros',
    version='0.1.0',
    description='Spatial-LLaVA for robots: Set-of-Marks grounding of spatial language, '
    'ROS 2 nodes, training and evaluation.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['spatial_llava_ros', 'spatial_llava_ros.*']),
    include_package_data=True,
    package_data={'spatial_llava_ros': ['config/*.yaml', 'config/*.json', 'data/**/*']},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={'console_scripts': ['spatial-llava = spatial_llava_ros.cli:main']},
)
