"""mmzoo.data"""
