"""mmzoo.serving"""
